// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/internal/configfs"
)

// Errors callers branch on.
var (
	// ErrNotOurs: a backstore of that name exists but its dev_config does
	// not start with "lunbridge/". Nothing was changed.
	ErrNotOurs = errors.New("backstore exists and is not lunbridge's")
	// ErrBusy: another process holds the device's UIO (the kernel allows
	// one opener), typically a lunbridge that is still running.
	ErrBusy = errors.New("UIO device busy")
	// ErrMismatch: the kernel's value differs from the requested one
	// (a control token ignored, an adopted device of another size or
	// dev_config).
	ErrMismatch = errors.New("configuration mismatch")
)

// Defaults applied by OpenDevice to zero DeviceConfig fields.
const (
	DefaultConfigfsRoot = "/sys/kernel/config"
	DefaultSysfsRoot    = "/sys"
	DefaultDevRoot      = "/dev"
	DefaultBlockSize    = 512
	// DefaultMaxSectors is hw_max_sectors: the largest transfer, in
	// blocks, the initiator is told about (Block Limits VPD): 1 MiB with
	// 512-byte blocks. The kernel's own default of 128 caps I/O at
	// 64 KiB with 512-byte blocks and cripples throughput.
	DefaultMaxSectors = 2048
	DefaultCmdTimeout = 30 * time.Second
)

// uioBound is how long OpenDevice waits for the UIO class device.
const uioBound = 5 * time.Second

// DeviceConfig describes a TCMU user backstore.
type DeviceConfig struct {
	// Name is the backstore object name, target/core/user_<HBA>/<Name>;
	// see ValidateName.
	Name string
	// HBA is N of target/core/user_N. The HBA is created when missing.
	HBA int
	// Config follows "lunbridge/" in dev_config; the UIO name then reads
	// tcm-user/<HBA>/<Name>/lunbridge/<Config>. The prefix marks the
	// backstore as lunbridge's. No ',' or control bytes.
	Config string
	// Size is dev_size in bytes, a multiple of BlockSize. When adopting,
	// 0 takes the existing size.
	Size int64
	// BlockSize is hw_block_size: 512 or 4096 (default 512). When
	// adopting, 0 takes the existing one.
	BlockSize uint32
	// MaxSectors is hw_max_sectors in blocks (default 2048). The kernel
	// rounds it down to a whole page, so it must be a multiple of
	// 4096/BlockSize.
	MaxSectors uint32
	// MaxDataAreaMB is max_data_area_mb, the data area of the shared
	// memory; 0 keeps the kernel default (1024 in 6.1).
	MaxDataAreaMB int
	// CmdTimeout is cmd_time_out, whole seconds (rounded up): commands
	// the handler leaves pending longer fail with 02/08/00 (LOGICAL UNIT
	// COMMUNICATION FAILURE). 0 means 30 s; negative disables it. The
	// kernel refuses changes once a LUN links the backstore, so it is set
	// only when the backstore is created.
	CmdTimeout time.Duration
	// QfullTimeout is qfull_time_out, whole seconds: how long a command
	// waits for ring space. 0 keeps the kernel default (-1: cmd_time_out
	// applies).
	QfullTimeout time.Duration
	// WriteCache sets attrib/emulate_write_cache (WCE in the Caching mode
	// page as the kernel would report it; the handler answers MODE SENSE
	// itself, so this is informational).
	WriteCache bool
	// TMRNotify sets attrib/tmr_notification: task management requests
	// (ABORT TASK, LUN RESET) are posted to the ring as TMR entries.
	TMRNotify bool
	// ConfigfsRoot, SysfsRoot and DevRoot default to /sys/kernel/config,
	// /sys and /dev; tests point them into a temporary directory.
	ConfigfsRoot string
	SysfsRoot    string
	DevRoot      string
	// FS drives configfs and sysfs; nil: the real file system. Tests
	// give a configfs.Fake.
	FS configfs.FS
}

// withDefaults fills zero fields that have a default; Size and BlockSize
// stay zero so that adoption can tell "take the existing value".
func (c DeviceConfig) withDefaults() DeviceConfig {
	if c.ConfigfsRoot == "" {
		c.ConfigfsRoot = DefaultConfigfsRoot
	}
	if c.SysfsRoot == "" {
		c.SysfsRoot = DefaultSysfsRoot
	}
	if c.DevRoot == "" {
		c.DevRoot = DefaultDevRoot
	}
	if c.MaxSectors == 0 {
		c.MaxSectors = DefaultMaxSectors
	}
	if c.CmdTimeout == 0 {
		c.CmdTimeout = DefaultCmdTimeout
	}
	return c
}

// forCreate applies the block size default for a backstore about to be
// created and validates the result.
func (c *DeviceConfig) forCreate() error {
	if c.BlockSize == 0 {
		c.BlockSize = DefaultBlockSize
	}
	return c.validate()
}

// validate checks a configuration for a new backstore. Adoption checks the
// parts it uses itself.
func (c DeviceConfig) validate() error {
	if err := ValidateName(c.Name); err != nil {
		return err
	}
	if err := validateConfig(c.Config); err != nil {
		return err
	}
	if c.HBA < 0 {
		return fmt.Errorf("tcmu: HBA %d is negative", c.HBA)
	}
	if c.BlockSize != 512 && c.BlockSize != 4096 {
		return fmt.Errorf("tcmu: block size %d, want 512 or 4096", c.BlockSize)
	}
	if c.Size <= 0 || c.Size%int64(c.BlockSize) != 0 {
		return fmt.Errorf("tcmu: size %d is not a positive multiple of the block size %d", c.Size, c.BlockSize)
	}
	// se_dev_align_max_sectors rounds down to PAGE_SIZE/block_size;
	// refuse values it would change, so the read-back check is exact.
	if align := 4096 / c.BlockSize; c.MaxSectors%align != 0 || c.MaxSectors > 1<<30 {
		return fmt.Errorf("tcmu: max sectors %d is not a multiple of %d", c.MaxSectors, align)
	}
	if c.MaxDataAreaMB < 0 {
		return fmt.Errorf("tcmu: max data area %d MiB is negative", c.MaxDataAreaMB)
	}
	if c.QfullTimeout < 0 {
		return fmt.Errorf("tcmu: qfull timeout %v is negative", c.QfullTimeout)
	}
	return nil
}

// Device is an open TCMU user backstore: its configfs directory, its UIO
// descriptor and the mapped shared memory (mailbox, command ring, data
// area).
//
// Lifecycle: OpenDevice creates (or adopts) and enables the backstore;
// a fabric then links it to a LUN; Close releases the UIO and mapping but
// leaves configfs as is, so a restarted lunbridge adopts the device and
// the initiator sees at most a pause; Remove also deletes the backstore
// once no LUN links it.
type Device struct {
	fsys    fsys
	dir     string // configfs directory of the backstore
	uio     string // /dev/uioN
	adopted bool

	mu     sync.Mutex
	cfg    DeviceConfig // protected by mu (Resize changes Size)
	f      *os.File     // protected by mu; nil once closed
	mem    []byte       // protected by mu; nil once closed
	closed bool         // protected by mu
}

// OpenDevice creates the backstore described by cfg, enables it and maps
// its UIO device, or adopts it when it already exists and is lunbridge's.
//
// Creation: mkdir target/core/user_<HBA>/<Name> (and the HBA when
// missing); one write to control of
//
//	dev_config=lunbridge/<Config>,dev_size=<Size>,hw_block_size=<B>,
//	hw_max_sectors=<M>[,max_data_area_mb=<X>],nl_reply_supported=-1
//
// (nl_reply_supported=-1 keeps the kernel from waiting for a netlink
// reply from a tcmu-runner daemon); then attrib/cmd_time_out,
// qfull_time_out, emulate_write_cache and tmr_notification; then
// enable. The control parser ignores unknown tokens silently, so every
// value is read back from attrib/ and a difference fails with
// ErrMismatch. On failure what OpenDevice created (the backstore, the
// HBA if it made it) is removed again and the UIO descriptor and mapping
// are released; an adopted backstore is left as it was.
//
// Adoption: if the directory exists and its dev_config is
// "lunbridge/<Config>", the device is reattached (Adopted reports true)
// after checking that Size and BlockSize match (zero takes the existing
// values); attributes are not rewritten, as the kernel refuses
// cmd_time_out while a LUN links the device. A backstore of that name
// that is not lunbridge's gives ErrNotOurs and is left untouched; one of
// another Config gives ErrMismatch.
//
// The UIO device is then found by name in /sys/class/uio, opened
// O_RDWR|O_NONBLOCK|O_CLOEXEC (ErrBusy if another process holds it) and
// mapped whole; the mailbox must be version 2 (else ErrVersion).
func OpenDevice(ctx context.Context, cfg DeviceConfig) (*Device, error) {
	return openDevice(ctx, configfs.Or(cfg.FS), cfg)
}

func openDevice(ctx context.Context, fsys fsys, cfg DeviceConfig) (_ *Device, err error) {
	cfg = cfg.withDefaults()
	if err := ValidateName(cfg.Name); err != nil {
		return nil, err
	}
	if err := validateConfig(cfg.Config); err != nil {
		return nil, err
	}
	core := filepath.Join(cfg.ConfigfsRoot, "target", "core")
	if _, err := fsys.Stat(core); err != nil {
		return nil, fmt.Errorf("tcmu: %s: %w (is configfs mounted and target_core_mod loaded?)", core, err)
	}
	if cfg.HBA < 0 {
		return nil, fmt.Errorf("tcmu: HBA %d is negative", cfg.HBA)
	}
	// Each step that acquires something records its release; on any
	// error they run newest first, so that a failed OpenDevice leaves
	// configfs as it found it and holds no descriptor or mapping.
	var undo undoStack
	defer func() {
		if err != nil {
			err = errors.Join(err, undo.run())
		}
	}()
	hba := filepath.Join(core, "user_"+strconv.Itoa(cfg.HBA))
	switch err := fsys.Mkdir(hba); {
	case err == nil:
		undo.push(func() error { return rmdirHBA(fsys, hba) })
	case !errors.Is(err, fs.ErrExist):
		return nil, fmt.Errorf("tcmu: mkdir %s: %w (is target_core_user loaded?)", hba, err)
	}
	d := &Device{fsys: fsys, dir: filepath.Join(hba, cfg.Name)}
	switch err := fsys.Mkdir(d.dir); {
	case errors.Is(err, fs.ErrExist):
		// Not ours to remove on failure: a previous run's, or
		// another tool's (adopt tells).
		d.adopted = true
		if cfg, err = d.adopt(cfg); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("tcmu: mkdir %s: %w", d.dir, err)
	default:
		undo.push(d.rmdirBackstore)
		if err := cfg.forCreate(); err != nil {
			return nil, err
		}
		if err := d.configure(cfg); err != nil {
			return nil, err
		}
	}
	d.cfg = cfg
	if err := d.attach(ctx, &undo); err != nil {
		return nil, err
	}
	return d, nil
}

// undoStack is the cleanup of a multi-step constructor: each step that
// acquires a resource pushes its release, and on failure run releases
// them newest first. On success the stack is dropped and the object's
// Close or Remove releases what it holds.
type undoStack []func() error

func (u *undoStack) push(release func() error) { *u = append(*u, release) }

// run calls every release, newest first, and joins their errors.
func (u *undoStack) run() error {
	var errs []error
	for i := len(*u) - 1; i >= 0; i-- {
		errs = append(errs, (*u)[i]())
	}
	*u = nil
	return errors.Join(errs...)
}

func (d *Device) attr(name string) string { return filepath.Join(d.dir, "attrib", name) }

// adopt checks an existing backstore and returns the effective
// configuration. A lunbridge backstore left unenabled (a crash during
// creation) is configured afresh.
func (d *Device) adopt(cfg DeviceConfig) (DeviceConfig, error) {
	dc, err := readAttr(d.fsys, d.attr("dev_config"))
	if err != nil {
		return cfg, err
	}
	got, ours := strings.CutPrefix(dc, configPrefix)
	if !ours {
		return cfg, fmt.Errorf("tcmu: %s has dev_config %q: %w", d.dir, dc, ErrNotOurs)
	}
	if got != cfg.Config {
		return cfg, fmt.Errorf("tcmu: %s has dev_config %q, want %q: %w",
			d.dir, dc, configPrefix+cfg.Config, ErrMismatch)
	}
	en, err := readAttr(d.fsys, filepath.Join(d.dir, "enable"))
	if err != nil {
		return cfg, err
	}
	if strings.TrimSpace(en) != "1" {
		if err := cfg.forCreate(); err != nil {
			return cfg, err
		}
		return cfg, d.configure(cfg)
	}
	size, err := readInt(d.fsys, d.attr("dev_size"))
	if err != nil {
		return cfg, err
	}
	bs, err := readInt(d.fsys, d.attr("hw_block_size"))
	if err != nil {
		return cfg, err
	}
	if cfg.Size != 0 && cfg.Size != size {
		return cfg, fmt.Errorf("tcmu: %s has dev_size %d, want %d: %w", d.dir, size, cfg.Size, ErrMismatch)
	}
	if cfg.BlockSize != 0 && int64(cfg.BlockSize) != bs {
		return cfg, fmt.Errorf("tcmu: %s has hw_block_size %d, want %d: %w", d.dir, bs, cfg.BlockSize, ErrMismatch)
	}
	cfg.Size, cfg.BlockSize = size, uint32(bs)
	if ms, err := readInt(d.fsys, d.attr("hw_max_sectors")); err == nil {
		cfg.MaxSectors = uint32(ms)
	}
	if mb, err := readInt(d.fsys, d.attr("max_data_area_mb")); err == nil {
		cfg.MaxDataAreaMB = int(mb)
	}
	if s, err := readInt(d.fsys, d.attr("cmd_time_out")); err == nil {
		cfg.CmdTimeout = time.Duration(s) * time.Second
		if s == 0 {
			cfg.CmdTimeout = -1
		}
	}
	return cfg, nil
}

// seconds converts a timeout to the whole seconds configfs takes,
// rounding up so that a short timeout does not become "none".
func seconds(t time.Duration) int64 {
	return int64((t + time.Second - 1) / time.Second)
}

// controlString is the single write to the backstore's control file.
func controlString(cfg DeviceConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dev_config=%s%s,dev_size=%d,hw_block_size=%d,hw_max_sectors=%d",
		configPrefix, cfg.Config, cfg.Size, cfg.BlockSize, cfg.MaxSectors)
	if cfg.MaxDataAreaMB > 0 {
		fmt.Fprintf(&b, ",max_data_area_mb=%d", cfg.MaxDataAreaMB)
	}
	b.WriteString(",nl_reply_supported=-1")
	return b.String()
}

func boolAttr(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

// configure writes control and the attributes that must precede enable,
// enables the device and verifies what the kernel kept.
func (d *Device) configure(cfg DeviceConfig) error {
	cmdTO := "0"
	if cfg.CmdTimeout > 0 {
		cmdTO = strconv.FormatInt(seconds(cfg.CmdTimeout), 10)
	}
	writes := []struct{ path, value string }{
		{filepath.Join(d.dir, "control"), controlString(cfg)},
		{d.attr("cmd_time_out"), cmdTO},
		// emulate_write_cache after enable would need a netlink listener
		// (tcmu_emulate_write_cache_store sends a reconfig event).
		{d.attr("emulate_write_cache"), boolAttr(cfg.WriteCache)},
		{d.attr("tmr_notification"), boolAttr(cfg.TMRNotify)},
	}
	if cfg.QfullTimeout > 0 {
		writes = append(writes, struct{ path, value string }{
			d.attr("qfull_time_out"), strconv.FormatInt(seconds(cfg.QfullTimeout), 10)})
	}
	writes = append(writes, struct{ path, value string }{filepath.Join(d.dir, "enable"), "1"})
	for _, w := range writes {
		if err := writeAttr(d.fsys, w.path, w.value); err != nil {
			return fmt.Errorf("tcmu: configure %s: %w", d.dir, err)
		}
	}
	want := map[string]string{
		"dev_config":          configPrefix + cfg.Config,
		"dev_size":            strconv.FormatInt(cfg.Size, 10),
		"hw_block_size":       strconv.FormatUint(uint64(cfg.BlockSize), 10),
		"hw_max_sectors":      strconv.FormatUint(uint64(cfg.MaxSectors), 10),
		"nl_reply_supported":  "-1",
		"cmd_time_out":        cmdTO,
		"emulate_write_cache": boolAttr(cfg.WriteCache),
		"tmr_notification":    boolAttr(cfg.TMRNotify),
	}
	if cfg.MaxDataAreaMB > 0 {
		want["max_data_area_mb"] = strconv.Itoa(cfg.MaxDataAreaMB)
	}
	if cfg.QfullTimeout > 0 {
		want["qfull_time_out"] = strconv.FormatInt(seconds(cfg.QfullTimeout), 10)
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(want)) {
		got, err := readAttr(d.fsys, d.attr(name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if strings.TrimSpace(got) != want[name] {
			errs = append(errs, fmt.Errorf("tcmu: %s: attrib/%s = %q, want %q: %w",
				d.dir, name, got, want[name], ErrMismatch))
		}
	}
	return errors.Join(errs...)
}

// attach finds, opens and maps the UIO device, and pushes the release of
// the descriptor and the mapping on undo.
func (d *Device) attach(ctx context.Context, undo *undoStack) error {
	want := uioName(d.cfg.HBA, d.cfg.Name, configPrefix+d.cfg.Config)
	n, err := findUIO(ctx, d.fsys, d.cfg.SysfsRoot, want, uioBound)
	if err != nil {
		return err
	}
	sizePath := filepath.Join(d.cfg.SysfsRoot, "class", "uio", n, "maps", "map0", "size")
	size, err := readInt(d.fsys, sizePath)
	if err != nil {
		return err
	}
	if size <= 0 || size > 1<<40 {
		return fmt.Errorf("tcmu: %s = %d: implausible map size", sizePath, size)
	}
	d.uio = filepath.Join(d.cfg.DevRoot, n)
	f, mem, err := openUIO(d.uio, int(size))
	if err != nil {
		return err
	}
	undo.push(func() error {
		err := unix.Munmap(mem)
		if err != nil {
			err = fmt.Errorf("tcmu: munmap %s: %w", d.uio, err)
		}
		return errors.Join(err, f.Close())
	})
	if err := checkMailbox(mem); err != nil {
		return err
	}
	d.f, d.mem = f, mem
	return nil
}

// Mem returns the shared memory: mailbox, command ring and data area. It
// is nil after Close.
func (d *Device) Mem() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mem
}

// Notifier returns the UIO notifier of the device for the command ring.
// After Close its methods fail with os.ErrClosed.
func (d *Device) Notifier() Notifier {
	d.mu.Lock()
	defer d.mu.Unlock()
	return &uioNotifier{f: d.f}
}

// Path returns the backstore's configfs directory; a fabric links it to
// a LUN.
func (d *Device) Path() string { return d.dir }

// UIO returns the path of the UIO device, /dev/uioN.
func (d *Device) UIO() string { return d.uio }

// Adopted reports whether the backstore existed before OpenDevice.
func (d *Device) Adopted() bool { return d.adopted }

// Config returns the effective configuration (defaults applied; for an
// adopted device, the kernel's values).
func (d *Device) Config() DeviceConfig {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

func (d *Device) action(name, value string) error {
	return writeAttr(d.fsys, filepath.Join(d.dir, "action", name), value)
}

// Block makes the kernel stop queueing new commands to the ring
// (action/block_dev 1): tcmu_block_dev reaps completions already posted
// and fails the commands waiting for ring space with BUSY; new ones also
// get BUSY until Unblock, so the initiator retries them.
func (d *Device) Block() error { return d.action("block_dev", "1") }

// Unblock undoes Block (action/block_dev 0).
func (d *Device) Unblock() error { return d.action("block_dev", "0") }

// ResetRing writes level to action/reset_ring (tcmu_reset_ring in Linux
// 6.1): every command still in the ring is completed by the kernel, with
// status BUSY for level 1 (the initiator retries it) or CHECK CONDITION
// for level 2 (hard failure); its data blocks are freed, cmd_head and
// cmd_tail in the mailbox are set to 0, a broken-ring mark is cleared
// and queued TMR notifications are dropped. A ring consumer must then
// start again from tail 0 and must not complete any of the old entries.
// The kernel refuses it (EINVAL) before the device is enabled.
//
// Seen on 6.1.0-56 with an unserved INQUIRY from a tcm_loop scan:
// cmd_head and cmd_tail read 0 right after the write, and the retried
// INQUIRY was queued again at offset 0 (reusing cmd_id 1). After level 2
// the scan gave up.
func (d *Device) ResetRing(level int) error {
	if level != 1 && level != 2 {
		return fmt.Errorf("tcmu: reset level %d, want 1 or 2", level)
	}
	return d.action("reset_ring", strconv.Itoa(level))
}

// Recover is the restart protocol for a handler that finds commands it
// cannot trust in the ring (for example after a crash mid-command): block
// the device, reset the ring at level 1 (outstanding commands get BUSY
// and are retried by the initiator), unblock. The caller then starts its
// ring consumer, which must process the ring once right away, as reading
// the UIO descriptor only wakes on new events.
//
// A handler that trusts the ring (it was killed between commands) may
// instead simply resume it: the kernel keeps it for cmd_time_out.
func (d *Device) Recover() error {
	if err := d.Block(); err != nil {
		return err
	}
	err := d.ResetRing(1)
	return errors.Join(err, d.Unblock())
}

// Resize changes dev_size while the device is enabled. The kernel
// (tcmu_dev_size_store) first multicasts a netlink reconfiguration event
// to the TCM-USER generic netlink family's "config" group and refuses the
// write with ESRCH when no socket listens (seen on 6.1). Resize therefore
// joins that group on a socket of its own for the duration of the write;
// nl_reply_supported=-1 keeps the kernel from waiting for an answer. The
// initiator learns the new capacity from the handler (READ CAPACITY goes
// to userspace).
//
// The group is joined before d.mu is taken: the family lookup waits for
// the kernel's answer (at most nlTimeout), and nothing waits on the
// kernel while holding the lock. When the join fails, the write is tried
// anyway and a refusal says why there was no listener.
func (d *Device) Resize(size int64) error {
	fd, joinErr := genlJoin("TCM-USER", "config")
	if joinErr == nil {
		defer unix.Close(fd)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if size <= 0 || size%int64(d.cfg.BlockSize) != 0 {
		return fmt.Errorf("tcmu: size %d is not a positive multiple of the block size %d", size, d.cfg.BlockSize)
	}
	err := writeAttr(d.fsys, d.attr("dev_size"), strconv.FormatInt(size, 10))
	if errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("tcmu: resize %s: the kernel found no TCM-USER netlink listener: %w", d.dir, errors.Join(err, joinErr))
	}
	if err != nil {
		return fmt.Errorf("tcmu: resize %s: %w", d.dir, err)
	}
	d.cfg.Size = size
	return nil
}

// nlTimeout bounds the wait for the kernel's answer to a netlink request.
const nlTimeout = 5 * time.Second

// genlJoin opens a NETLINK_GENERIC socket, resolves family's multicast
// group through the nlctrl family (CTRL_CMD_GETFAMILY) and joins it. The
// messages are never read: the socket only has to exist.
//
// Why this generic netlink client is hand-written and not
// github.com/mdlayher/genetlink (issue 15): package tcmu may import only
// the standard library and x/sys (CONTRIBUTING.md), and lunbridge needs
// little of netlink: one CTRL_CMD_GETFAMILY request, one multicast join
// and the decoding of three attributes of the TCM-USER events
// (parseEvents). That is genlJoin, nlAttr, nlAttrs and genlGroupID here
// plus parseEvents, about 125 lines with comments, all fuzzable on a
// []byte; genetlink would add mdlayher/netlink and mdlayher/socket to the
// one package that talks to the kernel's ring.
func genlJoin(family, group string) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return -1, fmt.Errorf("tcmu: netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(nlTimeout.Nanoseconds())
	err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	var id uint32
	if err == nil {
		id, err = genlGroupID(fd, family, group)
	}
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(id))
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("tcmu: join netlink group %s/%s: %w", family, group, err)
	}
	return fd, nil
}

// nlAttr appends a netlink attribute (struct nlattr: __u16 len, __u16
// type, payload padded to 4 bytes).
func nlAttr(b []byte, typ uint16, payload []byte) []byte {
	n := 4 + len(payload)
	b = ne.AppendUint16(b, uint16(n))
	b = ne.AppendUint16(b, typ)
	b = append(b, payload...)
	for n%4 != 0 {
		b = append(b, 0)
		n++
	}
	return b
}

// nlAttrs splits a run of netlink attributes into type -> payload.
func nlAttrs(b []byte) map[uint16][]byte {
	m := map[uint16][]byte{}
	for len(b) >= 4 {
		n := int(ne.Uint16(b[0:]))
		if n < 4 || n > len(b) {
			break
		}
		m[ne.Uint16(b[2:])&^(unix.NLA_F_NESTED|0x4000)] = b[4:n]
		b = b[min((n+3)&^3, len(b)):]
	}
	return m
}

// genlGroupID asks nlctrl for family and returns the id of its multicast
// group named group.
func genlGroupID(fd int, family, group string) (uint32, error) {
	// struct genlmsghdr: cmd, version, reserved.
	body := []byte{unix.CTRL_CMD_GETFAMILY, 1, 0, 0}
	body = nlAttr(body, unix.CTRL_ATTR_FAMILY_NAME, append([]byte(family), 0))
	msg := ne.AppendUint32(nil, uint32(unix.SizeofNlMsghdr+len(body)))
	msg = ne.AppendUint16(msg, unix.GENL_ID_CTRL)
	msg = ne.AppendUint16(msg, unix.NLM_F_REQUEST)
	msg = ne.AppendUint32(msg, 1) // seq
	msg = ne.AppendUint32(msg, 0) // pid: the kernel fills it in
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<16)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, err
	}
	buf = buf[:n]
	if len(buf) < unix.SizeofNlMsghdr+4 {
		return 0, fmt.Errorf("short netlink reply (%d bytes)", len(buf))
	}
	if ne.Uint16(buf[4:]) == unix.NLMSG_ERROR {
		// struct nlmsgerr: int error (negative errno), then the request.
		if e := int32(ne.Uint32(buf[unix.SizeofNlMsghdr:])); e < 0 {
			return 0, syscall.Errno(-e)
		}
		return 0, errors.New("unexpected netlink ack")
	}
	attrs := nlAttrs(buf[unix.SizeofNlMsghdr+4 : min(int(ne.Uint32(buf[0:])), len(buf))])
	for _, g := range nlAttrs(attrs[unix.CTRL_ATTR_MCAST_GROUPS]) {
		ga := nlAttrs(g)
		name := strings.TrimRight(string(ga[unix.CTRL_ATTR_MCAST_GRP_NAME]), "\x00")
		if id := ga[unix.CTRL_ATTR_MCAST_GRP_ID]; name == group && len(id) == 4 {
			return ne.Uint32(id), nil
		}
	}
	return 0, fmt.Errorf("family %s has no multicast group %s: %w", family, group, fs.ErrNotExist)
}

// Close unmaps the shared memory and closes the UIO descriptor; configfs
// is left as is, so a new OpenDevice adopts the backstore. Commands the
// kernel queues meanwhile wait up to cmd_time_out. The ring consumer must
// have stopped: Mem is unmapped (touching it faults) and the Notifier
// fails from now on.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	if d.mem != nil {
		if err := unix.Munmap(d.mem); err != nil {
			errs = append(errs, fmt.Errorf("tcmu: munmap %s: %w", d.uio, err))
		}
		d.mem = nil
	}
	if d.f != nil {
		errs = append(errs, d.f.Close())
		d.f = nil
	}
	return errors.Join(errs...)
}

// Remove closes the device and deletes the backstore, then its HBA if
// that is now empty. No fabric LUN may link the backstore any more: the
// fabric removes its links first (the kernel refuses rmdir otherwise).
func (d *Device) Remove() error {
	return errors.Join(d.Close(), d.rmdir())
}

// rmdir removes the backstore directory and, when it was the last one,
// the user_N HBA.
func (d *Device) rmdir() error {
	if err := d.rmdirBackstore(); err != nil {
		return err
	}
	return rmdirHBA(d.fsys, filepath.Dir(d.dir))
}

// rmdirBackstore removes the backstore directory; one already gone is
// not an error.
func (d *Device) rmdirBackstore() error {
	if err := d.fsys.Rmdir(d.dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("tcmu: rmdir %s: %w", d.dir, err)
	}
	return nil
}

// rmdirHBA removes a user_N HBA directory if it is empty: rmdir of one
// that still holds a backstore fails, which is not an error here.
func rmdirHBA(fsys fsys, hba string) error {
	err := fsys.Rmdir(hba)
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTEMPTY) ||
		errors.Is(err, syscall.EBUSY) {
		return nil
	}
	return fmt.Errorf("tcmu: rmdir %s: %w", hba, err)
}
