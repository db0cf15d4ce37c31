// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Backend does the data operations of a disk. Offsets and lengths are in
// bytes, always multiples of the block size and inside the disk: Disk
// validates every command before it calls the Backend. Methods are called
// concurrently.
type Backend interface {
	// ReadAt fills bufs in order from off (preadv). It returns n smaller
	// than the buffers' total only with an error.
	ReadAt(bufs [][]byte, off int64) (n int, err error)
	// WriteAt writes bufs in order at off (pwritev). It returns n smaller
	// than the buffers' total only with an error.
	WriteAt(bufs [][]byte, off int64) (n int, err error)
	// Sync makes [off, off+n) durable; n == 0 means everything.
	Sync(off, n int64) error
	// Unmap deallocates [off, off+n): later reads return zeros (LBPRZ).
	Unmap(off, n int64) error
	// Mapped reports whether the extent that starts at off is mapped and
	// its length in bytes (at least one block, possibly past the end of
	// the disk).
	Mapped(off int64) (mapped bool, n int64, err error)
}

// Zeroer is implemented by a Backend that can write zeros without a data
// buffer (fallocate ZERO_RANGE). Without it, WRITE SAME of a zero block
// without UNMAP writes a zero buffer with WriteAt.
type Zeroer interface {
	// WriteZeroes makes [off, off+n) read as zeros and stay mapped.
	WriteZeroes(off, n int64) error
}

// Copier is implemented by a Backend that can copy from another Backend
// without passing the data through a buffer: copy_file_range, which file
// systems with shared extents turn into a reflink. EXTENDED COPY uses it
// when the destination implements it, and reads and writes otherwise.
type Copier interface {
	// CopyFrom copies n bytes at srcOff of src to dstOff of this Backend.
	// An error wrapping errors.ErrUnsupported means it cannot (another
	// file system, another kind of Backend): the caller then copies the
	// range itself. Any other error is an I/O failure.
	CopyFrom(src Backend, srcOff, dstOff, n int64) error
}

// Kind classifies a command for statistics.
type Kind uint8

// Kinds of commands.
const (
	KindOther Kind = iota
	KindRead
	KindWrite
	KindSync
	KindUnmap
	KindWriteSame
	KindCompareAndWrite
)

func (k Kind) String() string {
	switch k {
	case KindRead:
		return "read"
	case KindWrite:
		return "write"
	case KindSync:
		return "sync"
	case KindUnmap:
		return "unmap"
	case KindWriteSame:
		return "writesame"
	case KindCompareAndWrite:
		return "caw"
	}
	return "other"
}

// Result describes a command that ran (or failed after it was decoded).
type Result struct {
	Kind Kind
	// Bytes is the number of data bytes moved to or from the medium: read
	// into data-in buffers, or written.
	Bytes int
	// DataIn is the number of bytes of data-in placed at the start of the
	// data buffers; a value below the buffers' total is a short transfer
	// (the residual is the difference). It is 0 for data-out commands.
	DataIn int
	// LBA and Blocks are the command's range, for logs.
	LBA    uint64
	Blocks uint32
}

// Config describes a disk. The zero values of the limits select defaults.
type Config struct {
	// BlockSize is the logical block size: 512 or 4096.
	BlockSize uint32
	// PhysicalBlockSize is the physical block size reported by READ
	// CAPACITY(16): a power-of-two multiple of BlockSize (default 4096 or
	// BlockSize if larger).
	PhysicalBlockSize uint32
	// Blocks is the capacity in logical blocks.
	Blocks uint64
	// ReadOnly makes every command that changes the medium fail with DATA
	// PROTECT, WRITE PROTECTED, and sets WP in the mode parameter header.
	ReadOnly bool
	// WriteCache is the initial (and default) WCE bit of the caching mode
	// page: true is write-back; false makes every write durable (Sync)
	// before it completes. MODE SELECT may change it.
	WriteCache bool
	// Vendor (8 chars), Product (16) and Revision (4) are the INQUIRY
	// identification, printable ASCII, space padded. Defaults: "LUNBRIDG",
	// "lunbridge", "0001".
	Vendor, Product, Revision string
	// Serial is the unit serial number (VPD page 80h), printable ASCII, at
	// most 64 characters. If empty it is derived from NAA.
	Serial string
	// NAA is the NAA IEEE Registered Extended designator (VPD page 83h),
	// stable per LUN; see NAAFromName. If zero it is derived from Serial.
	NAA [16]byte
	// MaxTransferBlocks is the MAXIMUM TRANSFER LENGTH of VPD page B0h:
	// longer READ/WRITE/VERIFY/COMPARE AND WRITE commands fail with
	// INVALID FIELD IN CDB. Default 1 MiB worth of blocks.
	MaxTransferBlocks uint32
	// OptimalTransferBlocks is the OPTIMAL TRANSFER LENGTH (default
	// MaxTransferBlocks).
	OptimalTransferBlocks uint32
	// MaxUnmapBlocks and MaxUnmapDescriptors bound one UNMAP (VPD B0h);
	// defaults 1 GiB worth of blocks and 256.
	MaxUnmapBlocks, MaxUnmapDescriptors uint32
	// MaxWriteSameBlocks bounds WRITE SAME (VPD B0h); default 1 GiB worth
	// of blocks.
	MaxWriteSameBlocks uint32
	// ThinProvisioning enables logical block provisioning management:
	// LBPME, LBPRZ, UNMAP, WRITE SAME with UNMAP and GET LBA STATUS.
	ThinProvisioning bool
	// KernelPR says the kernel emulates persistent reservations for this
	// device (configfs attrib/emulate_pr=1, the default): PERSISTENT
	// RESERVE IN/OUT are then listed by REPORT SUPPORTED OPERATION CODES.
	// They never reach the disk either way.
	KernelPR bool
	// ALUA, if set, makes the disk one target port group of a logical
	// unit exported by several gateways (alua.go). Nil: no ALUA (TPGS
	// 00b), and REPORT TARGET PORT GROUPS is not supported.
	ALUA ALUA
	// Peers resolves the NAA designator of an EXTENDED COPY CSCD
	// descriptor to a disk of the same daemon. Nil: only this disk.
	Peers func(designator []byte) (*Disk, bool)
}

// Defaults.
const (
	DefaultVendor   = "LUNBRIDG"
	DefaultProduct  = "lunbridge"
	DefaultRevision = "0001"
)

// lioOUI is the IEEE company ID of the Linux-IO target, under which LIO
// itself builds its NAA designators ("naa.6001405...").
const lioOUI = 0x001405

// NAAFromName derives a stable NAA IEEE Registered Extended designator
// (NAA 6, SPC-5) from a LUN name: the LIO company ID 001405h,
// then 100 bits of the SHA-256 of the name as the vendor specific
// identifier and its extension.
func NAAFromName(name string) [16]byte {
	h := sha256.Sum256([]byte("lunbridge naa\x00" + name))
	var n [16]byte
	// NAA (4 bits) | IEEE COMPANY ID (24) | VSI (36) | VSI EXTENSION (64).
	n[0] = 0x60 | lioOUI>>20
	n[1] = lioOUI >> 12 & 0xff
	n[2] = lioOUI >> 4 & 0xff
	n[3] = lioOUI<<4&0xf0 | h[0]&0x0f
	copy(n[4:], h[1:13])
	return n
}

// Disk is an emulated SBC-4 direct-access block device over a Backend. Its
// methods are safe for concurrent use.
type Disk struct {
	be     Backend
	zeroer Zeroer       // be, if it implements Zeroer
	nowait NowaitReader // be, if it implements NowaitReader

	cfg Config // immutable after NewDisk, but for Blocks and ReadOnly
	bs  int64  // logical block size
	// physExp is LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT.
	physExp uint8

	blocks   atomic.Uint64
	readOnly atomic.Bool
	offline  atomic.Bool
	stopped  atomic.Bool
	wce      atomic.Bool
	dsense   atomic.Bool
	// ua is the pending unit attention, ASC<<8|ASCQ, or 0.
	ua atomic.Uint32

	// writeMu orders writes against COMPARE AND WRITE (SBC-4: the
	// compare and the write are atomic with respect to every other
	// command that writes the range). Writes, unmaps and WRITE SAME hold
	// it shared, COMPARE AND WRITE exclusive: writes never serialize with
	// each other, and the read-compare-write of a CAW sees no write.
	writeMu sync.RWMutex

	copyMu sync.Mutex
	// copies holds the status of EXTENDED COPY(LID1) commands by LIST
	// IDENTIFIER; protected by copyMu.
	copies map[uint8]copyStatus
}

// NewDisk validates cfg, fills its defaults and returns a disk over be.
func NewDisk(cfg Config, be Backend) (*Disk, error) {
	if be == nil {
		return nil, errors.New("scsi: nil backend")
	}
	if cfg.BlockSize != 512 && cfg.BlockSize != 4096 {
		return nil, fmt.Errorf("scsi: block size %d: must be 512 or 4096", cfg.BlockSize)
	}
	if cfg.PhysicalBlockSize == 0 {
		cfg.PhysicalBlockSize = max(4096, cfg.BlockSize)
	}
	ratio := cfg.PhysicalBlockSize / cfg.BlockSize
	if cfg.PhysicalBlockSize%cfg.BlockSize != 0 || ratio&(ratio-1) != 0 || ratio > 1<<15 {
		return nil, fmt.Errorf("scsi: physical block size %d: not a power-of-two multiple of %d", cfg.PhysicalBlockSize, cfg.BlockSize)
	}
	if cfg.Blocks == 0 {
		return nil, errors.New("scsi: capacity is zero")
	}
	if cfg.Blocks > 1<<63/uint64(cfg.BlockSize) {
		return nil, fmt.Errorf("scsi: capacity %d blocks: too large", cfg.Blocks)
	}
	var err error
	if cfg.Vendor, err = ident("vendor", cfg.Vendor, DefaultVendor, 8); err != nil {
		return nil, err
	}
	if cfg.Product, err = ident("product", cfg.Product, DefaultProduct, 16); err != nil {
		return nil, err
	}
	if cfg.Revision, err = ident("revision", cfg.Revision, DefaultRevision, 4); err != nil {
		return nil, err
	}
	if cfg.NAA == ([16]byte{}) && cfg.Serial == "" {
		return nil, errors.New("scsi: config needs a serial number or an NAA designator")
	}
	if cfg.NAA == ([16]byte{}) {
		cfg.NAA = NAAFromName(cfg.Serial)
	}
	if cfg.NAA[0]>>4 != 6 {
		return nil, fmt.Errorf("scsi: NAA designator %x: not NAA 6 (IEEE Registered Extended)", cfg.NAA)
	}
	if cfg.Serial == "" {
		cfg.Serial = fmt.Sprintf("%x", cfg.NAA[3:])
	}
	if len(cfg.Serial) > 64 || !printable(cfg.Serial) {
		return nil, fmt.Errorf("scsi: serial %q: want at most 64 printable ASCII characters", cfg.Serial)
	}
	if cfg.ALUA != nil && cfg.ALUA.Local().RelativePort == 0 {
		return nil, errors.New("scsi: ALUA relative target port identifier 0 is reserved")
	}
	if cfg.MaxTransferBlocks == 0 {
		cfg.MaxTransferBlocks = 1 << 20 / cfg.BlockSize
	}
	if cfg.OptimalTransferBlocks == 0 || cfg.OptimalTransferBlocks > cfg.MaxTransferBlocks {
		cfg.OptimalTransferBlocks = cfg.MaxTransferBlocks
	}
	if cfg.MaxUnmapBlocks == 0 {
		cfg.MaxUnmapBlocks = 1 << 30 / cfg.BlockSize
	}
	if cfg.MaxUnmapDescriptors == 0 {
		cfg.MaxUnmapDescriptors = 256
	}
	if cfg.MaxWriteSameBlocks == 0 {
		cfg.MaxWriteSameBlocks = 1 << 30 / cfg.BlockSize
	}
	d := &Disk{be: be, cfg: cfg, bs: int64(cfg.BlockSize)}
	d.zeroer, _ = be.(Zeroer)
	d.nowait, _ = be.(NowaitReader)
	for r := ratio; r > 1; r >>= 1 {
		d.physExp++
	}
	d.blocks.Store(cfg.Blocks)
	d.readOnly.Store(cfg.ReadOnly)
	d.wce.Store(cfg.WriteCache)
	return d, nil
}

// ident validates an INQUIRY identification string.
func ident(what, s, def string, n int) (string, error) {
	if s == "" {
		s = def
	}
	if len(s) > n || !printable(s) {
		return "", fmt.Errorf("scsi: %s %q: want at most %d printable ASCII characters", what, s, n)
	}
	return s, nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Config returns the disk's configuration with its current capacity,
// write protection and write cache mode.
func (d *Disk) Config() Config {
	c := d.cfg
	c.Blocks = d.blocks.Load()
	c.ReadOnly = d.readOnly.Load()
	c.WriteCache = d.wce.Load()
	return c
}

// SetReadOnly sets software write protection.
func (d *Disk) SetReadOnly(ro bool) { d.readOnly.Store(ro) }

// SetOnline takes the medium online or offline. Offline, commands that
// access the medium fail with NOT READY, MANUAL INTERVENTION REQUIRED;
// INQUIRY, MODE SENSE, REQUEST SENSE and the like still work.
func (d *Disk) SetOnline(on bool) { d.offline.Store(!on) }

// Online reports whether the medium is online (see SetOnline).
func (d *Disk) Online() bool { return !d.offline.Load() }

// Stopped reports whether START STOP UNIT has stopped the unit.
func (d *Disk) Stopped() bool { return d.stopped.Load() }

// SetCapacity changes the capacity and raises a CAPACITY DATA HAS CHANGED
// unit attention, reported once on the next command other than INQUIRY,
// REPORT LUNS and REQUEST SENSE (SPC-5, SBC-4).
func (d *Disk) SetCapacity(blocks uint64) error {
	if blocks == 0 || blocks > 1<<63/uint64(d.bs) {
		return fmt.Errorf("scsi: capacity %d blocks: out of range", blocks)
	}
	if d.blocks.Swap(blocks) != blocks {
		d.raise(ErrCapacityChanged)
	}
	return nil
}

// WriteCache reports the current WCE bit.
func (d *Disk) WriteCache() bool { return d.wce.Load() }

// SetWriteCache sets the WCE bit, as MODE SELECT would.
func (d *Disk) SetWriteCache(on bool) { d.wce.Store(on) }

// raise makes e the pending unit attention.
func (d *Disk) raise(e *Error) { d.ua.Store(uint32(e.ASC)<<8 | uint32(e.ASCQ)) }

// takeUA returns and clears the pending unit attention, or nil.
func (d *Disk) takeUA() *Error {
	for {
		v := d.ua.Load()
		if v == 0 {
			return nil
		}
		if d.ua.CompareAndSwap(v, 0) {
			return &Error{Key: KeyUnitAttention, ASC: uint8(v >> 8), ASCQ: uint8(v)}
		}
	}
}

// Sense appends the sense data of e to dst in the format selected by the
// D_SENSE bit of the control mode page: fixed (70h) by default,
// descriptor (72h) when set.
func (d *Disk) Sense(dst []byte, e *Error) []byte {
	if d.dsense.Load() {
		return e.Descriptor(dst)
	}
	return e.Fixed(dst)
}

// Execute runs one command. data are the command's data buffers: for a
// data-out command they hold the data; a data-in command fills them from
// the start, and Result.DataIn says how far. A nil error is GOOD status;
// an *Error is CHECK CONDITION with that sense; any other error comes from
// the Backend, wrapped, for the caller to map to sense data.
//
// READ and WRITE whose buffers exactly cover the transfer do not allocate.
func (d *Disk) Execute(cdb []byte, data [][]byte) (Result, error) {
	if len(cdb) > 0 && d.ua.Load() != 0 {
		// SAM-5: a pending unit attention ends any command but
		// INQUIRY, REPORT LUNS and REQUEST SENSE (which reports it),
		// the commands flagged fNoUA.
		if c := byOpcode[cdb[0]]; len(c) == 0 || c[0].flags&fNoUA == 0 {
			if e := d.takeUA(); e != nil {
				return Result{}, e
			}
		}
	}
	c, kind, err := d.admit(cdb)
	if err != nil {
		return Result{Kind: kind}, err
	}
	cmd := c.cmd
	// The commands of steady-state I/O call their handlers directly so
	// that c stays on the stack: a call through the table's function
	// value makes it escape, one allocation per command. Each case must
	// name the handler its table entry names (TestDirectDispatch).
	switch c.Op {
	case OpRead10, OpRead16, OpRead12, OpRead6:
		return d.read(&c, data)
	case OpWrite10, OpWrite16, OpWrite12, OpWrite6:
		return d.write(&c, data)
	case OpTestUnitReady:
		return d.testUnitReady(&c, data)
	case OpSynchronizeCache10, OpSynchronizeCache16:
		return d.synchronizeCache(&c, data)
	case OpUnmap:
		return d.unmap(&c, data)
	case OpWriteSame10, OpWriteSame16:
		return d.writeSame(&c, data)
	case OpVerify10, OpVerify16:
		return d.verify(&c, data)
	}
	c2 := c
	return cmd.exec(d, &c2, data)
}

// admit is the prologue of every command after the unit attention
// check, shared by Execute and TryRead: it decodes cdb and checks that the
// disk runs the command and that the port's ALUA state and the medium's
// state (online, started) allow it. kind is the command's, for the Result
// of a check that failed after decoding (KindOther before).
func (d *Disk) admit(cdb []byte) (c CDB, kind Kind, err error) {
	c, err = ParseCDB(cdb)
	if err != nil {
		return CDB{}, KindOther, err
	}
	cmd := c.cmd
	if !d.supports(cmd) || cmd.exec == nil {
		return CDB{}, KindOther, ErrInvalidOpcode
	}
	if d.cfg.ALUA != nil {
		if err := d.aluaCheck(cmd); err != nil {
			return c, cmd.kind, err
		}
	}
	if cmd.flags&fMedium != 0 {
		if d.offline.Load() {
			return c, cmd.kind, ErrNotReadyManual
		}
		if d.stopped.Load() {
			return c, cmd.kind, ErrNotReadyStopped
		}
	}
	return c, cmd.kind, nil
}

// supports reports whether the disk runs (or, for fKernel, lists) cmd.
func (d *Disk) supports(cmd *command) bool {
	f := cmd.flags
	switch {
	case f&fThin != 0 && !d.cfg.ThinProvisioning:
		return false
	case f&fKernelPR != 0:
		return d.cfg.KernelPR
	case f&fALUA != 0:
		return d.cfg.ALUA != nil
	}
	return true
}

// capacity is the current number of logical blocks.
func (d *Disk) capacity() uint64 { return d.blocks.Load() }

// checkRange fails with LBA OUT OF RANGE unless [lba, lba+n) is inside
// the disk, without overflowing (SBC-4). With n == 0, lba itself must
// be a valid LBA.
func (d *Disk) checkRange(lba uint64, n uint64) error {
	c := d.capacity()
	if lba >= c || n > c-lba {
		return ErrLBAOutOfRange
	}
	return nil
}

// checkWritable fails with WRITE PROTECTED on a read-only disk.
func (d *Disk) checkWritable() error {
	if d.readOnly.Load() {
		return ErrWriteProtected
	}
	return nil
}
