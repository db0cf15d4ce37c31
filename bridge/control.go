// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxControlLine bounds a control line; a path is at most PATH_MAX (4096)
// bytes.
const MaxControlLine = 8192

// Op is the verb of a control line.
type Op string

// The control verbs. Export and remove manage the daemon's LUNs; the
// others act on one LUN.
const (
	OpExport     Op = "export"      // export NAME PATH [key=value ...]
	OpRemove     Op = "remove"      // remove NAME
	OpOnline     Op = "online"      // online
	OpOffline    Op = "offline"     // offline
	OpReadOnly   Op = "read-only"   // read-only 0|1
	OpResize     Op = "resize"      // resize SIZE
	OpFlush      Op = "flush"       // flush
	OpResetStats Op = "reset-stats" // reset-stats
	// OpSnapshot makes the snapshot NAME (Name) of the LUN; rate= (Size)
	// paces a background copy in bytes per second.
	OpSnapshot       Op = "snapshot"        // snapshot NAME [rate=SIZE]
	OpDeleteSnapshot Op = "delete-snapshot" // delete-snapshot NAME
)

// ForLUN reports whether the verb acts on one LUN rather than on the
// daemon's set of LUNs.
func (o Op) ForLUN() bool { return o != OpExport && o != OpRemove }

// Options of the export verb, in canonical order.
const (
	optSize = 1 << iota
	optBlockSize
	optReadOnly
	optFabric
	optWriteThrough
)

var exportKeys = []struct {
	key string
	bit uint8
}{
	{"size", optSize},
	{"block-size", optBlockSize},
	{"read-only", optReadOnly},
	{"fabric", optFabric},
	{"write-through", optWriteThrough},
}

// Control is one control line, parsed by ParseControl: the one grammar of
// the daemon's control surface, used by the FUSE view and Daemon.Control
// alike.
type Control struct {
	Op           Op
	Name         string // export, remove: the LUN (ValidName); snapshot, delete-snapshot: the snapshot
	Path         string // export: the backing file, absolute
	Size         int64  // export size=, resize: bytes; snapshot rate=: bytes per second (0: default)
	BlockSize    uint32 // export block-size=: 512 or 4096
	ReadOnly     bool   // read-only, export read-only=
	WriteThrough bool   // export write-through=
	Fabric       string // export fabric=: loop, iscsi or none
	opts         uint8  // export: the options given (opt* bits)
}

// Has reports whether an export line gave the option key ("size",
// "block-size", "read-only", "fabric" or "write-through").
func (c Control) Has(key string) bool {
	for _, k := range exportKeys {
		if k.key == key {
			return c.opts&k.bit != 0
		}
	}
	return false
}

// String returns the canonical line: export options in the order above,
// sizes in bytes. ParseControl(c.String()) gives c back.
func (c Control) String() string {
	switch c.Op {
	case OpExport:
		var b strings.Builder
		b.WriteString("export " + c.Name + " " + c.Path)
		for _, k := range exportKeys {
			if c.opts&k.bit == 0 {
				continue
			}
			b.WriteString(" " + k.key + "=")
			switch k.bit {
			case optSize:
				b.WriteString(strconv.FormatInt(c.Size, 10))
			case optBlockSize:
				b.WriteString(strconv.FormatUint(uint64(c.BlockSize), 10))
			case optReadOnly:
				b.WriteString(bit(c.ReadOnly))
			case optFabric:
				b.WriteString(c.Fabric)
			case optWriteThrough:
				b.WriteString(bit(c.WriteThrough))
			}
		}
		return b.String()
	case OpRemove:
		return "remove " + c.Name
	case OpReadOnly:
		return "read-only " + bit(c.ReadOnly)
	case OpResize:
		return "resize " + strconv.FormatInt(c.Size, 10)
	case OpSnapshot:
		if c.Size > 0 {
			return "snapshot " + c.Name + " rate=" + strconv.FormatInt(c.Size, 10)
		}
		return "snapshot " + c.Name
	case OpDeleteSnapshot:
		return "delete-snapshot " + c.Name
	}
	return string(c.Op)
}

func bit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("control: "+format+": %w", append(args, ErrInvalid)...)
}

// ParseControl parses one control line. The grammar is strict so that a
// typo never does something else:
//
//   - one line: an optional trailing newline, no other control
//     character, valid UTF-8, at most MaxControlLine bytes;
//   - fields separated by exactly one space;
//   - one of
//     export NAME PATH [size=SIZE] [block-size=512|4096] [read-only=0|1]
//     [fabric=loop|iscsi|none] [write-through=0|1]
//     remove NAME
//     online | offline | flush | reset-stats
//     read-only 0|1
//     resize SIZE
//     snapshot NAME [rate=SIZE]
//     delete-snapshot NAME
//
// NAME satisfies ValidName; PATH is absolute (the daemon's working
// directory is not the writer's); SIZE is a positive ParseSize count;
// export options come in any order, each at most once. Every error wraps
// ErrInvalid.
func ParseControl(line string) (Control, error) {
	f, err := fields(line)
	if err != nil {
		return Control{}, err
	}
	c := Control{Op: Op(f[0])}
	args := f[1:]
	want := func(n int, usage string) error {
		if len(args) != n {
			return invalid("want %q", usage)
		}
		return nil
	}
	switch c.Op {
	case OpOnline, OpOffline, OpFlush, OpResetStats:
		err = want(0, string(c.Op))
	case OpReadOnly:
		if err = want(1, "read-only 0|1"); err == nil {
			c.ReadOnly, err = parseBit(args[0])
		}
	case OpResize:
		if err = want(1, "resize SIZE"); err == nil {
			c.Size, err = positiveSize(args[0])
		}
	case OpRemove:
		if err = want(1, "remove NAME"); err == nil {
			c.Name = args[0]
			err = ValidName(c.Name)
		}
	case OpExport:
		err = c.parseExport(args)
	case OpSnapshot:
		err = c.parseSnapshot(args)
	case OpDeleteSnapshot:
		if err = want(1, "delete-snapshot NAME"); err == nil {
			c.Name = args[0]
			err = ValidSnapshotName(c.Name)
		}
	default:
		err = invalid("unknown command %q", f[0])
	}
	if err != nil {
		return Control{}, err
	}
	return c, nil
}

func (c *Control) parseExport(args []string) error {
	if len(args) < 2 {
		return invalid("want \"export NAME PATH [key=value ...]\"")
	}
	c.Name, c.Path = args[0], args[1]
	if err := ValidName(c.Name); err != nil {
		return err
	}
	if !filepath.IsAbs(c.Path) {
		return invalid("backing path %q is not absolute", c.Path)
	}
	for _, opt := range args[2:] {
		key, val, ok := strings.Cut(opt, "=")
		if !ok {
			return invalid("option %q: want key=value", opt)
		}
		var b uint8
		for _, k := range exportKeys {
			if k.key == key {
				b = k.bit
			}
		}
		if b == 0 {
			return invalid("unknown option %q", key)
		}
		if c.opts&b != 0 {
			return invalid("option %q given twice", key)
		}
		c.opts |= b
		var err error
		switch b {
		case optSize:
			c.Size, err = positiveSize(val)
		case optBlockSize:
			switch val {
			case "512", "4096":
				n, _ := strconv.ParseUint(val, 10, 32)
				c.BlockSize = uint32(n)
			default:
				err = invalid("block-size %q: want 512 or 4096", val)
			}
		case optReadOnly:
			c.ReadOnly, err = parseBit(val)
		case optWriteThrough:
			c.WriteThrough, err = parseBit(val)
		case optFabric:
			switch val {
			case "loop", "iscsi", "none":
				c.Fabric = val
			default:
				err = invalid("fabric %q: want loop, iscsi or none", val)
			}
		}
		if err != nil {
			return fmt.Errorf("option %s: %w", key, err)
		}
	}
	return nil
}

// parseSnapshot parses "snapshot NAME [rate=SIZE]"'s arguments.
func (c *Control) parseSnapshot(args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return invalid("want \"snapshot NAME [rate=SIZE]\"")
	}
	c.Name = args[0]
	if err := ValidSnapshotName(c.Name); err != nil {
		return err
	}
	if len(args) == 2 {
		v, ok := strings.CutPrefix(args[1], "rate=")
		if !ok {
			return invalid("option %q: want rate=SIZE (bytes per second)", args[1])
		}
		n, err := positiveSize(v)
		if err != nil {
			return fmt.Errorf("option rate: %w", err)
		}
		c.Size = n
	}
	return nil
}

// fields splits one line into its fields (see ParseControl).
func fields(line string) ([]string, error) {
	line = strings.TrimSuffix(line, "\n")
	switch {
	case line == "":
		return nil, invalid("empty command")
	case len(line) > MaxControlLine:
		return nil, invalid("command longer than %d bytes", MaxControlLine)
	case !utf8.ValidString(line):
		return nil, invalid("command is not UTF-8")
	}
	for _, r := range line {
		if r < 0x20 || r == 0x7f {
			return nil, invalid("control character %q in command (one line per write)", r)
		}
	}
	f := strings.Split(line, " ")
	for _, s := range f {
		if s == "" {
			return nil, invalid("empty field in %q (separate fields by one space)", line)
		}
	}
	return f, nil
}

func parseBit(v string) (bool, error) {
	switch v {
	case "0":
		return false, nil
	case "1":
		return true, nil
	}
	return false, invalid("%q: want 0 or 1", v)
}

func positiveSize(v string) (int64, error) {
	n, err := ParseSize(v)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, invalid("size 0")
	}
	return n, nil
}
