// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/lunbridge/lunbridge/internal/memdisk"
)

// cscd is an identification descriptor CSCD descriptor (E4h) naming naa,
// block device type, with disk block length bl.
func cscd(naa [16]byte, bl uint32) []byte {
	b := make([]byte, 32)
	b[0] = 0xe4
	b[4], b[5], b[7] = 0x01, 0x03, 16
	copy(b[8:], naa[:])
	b[29], b[30], b[31] = byte(bl>>16), byte(bl>>8), byte(bl)
	return b
}

// segment is a block-to-block segment descriptor (02h).
func segment(src, dst uint16, n uint16, srcLBA, dstLBA uint64) []byte {
	b := make([]byte, 28)
	b[0] = 0x02
	put16(b[2:], 0x18)
	put16(b[4:], src)
	put16(b[6:], dst)
	put16(b[10:], n)
	put64(b[12:], srcLBA)
	put64(b[20:], dstLBA)
	return b
}

func xcopyList(listID, usage byte, cscds [][]byte, segs [][]byte) []byte {
	p := make([]byte, 16)
	p[0], p[1] = listID, usage<<3
	var c, s []byte
	for _, x := range cscds {
		c = append(c, x...)
	}
	for _, x := range segs {
		s = append(s, x...)
	}
	put16(p[2:], uint16(len(c)))
	put32(p[8:], uint32(len(s)))
	return append(append(p, c...), s...)
}

// repeat returns n copies of b.
func repeat(b []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

func xcopyCDB(n int) []byte {
	b := make([]byte, 16)
	b[0] = byte(OpExtendedCopy)
	put32(b[10:], uint32(n))
	return b
}

func copyResults(sa byte, listID byte, alloc uint32) []byte {
	b := make([]byte, 16)
	b[0], b[1], b[2] = byte(OpReceiveCopyResults), sa, listID
	put32(b[10:], alloc)
	return b
}

func TestExtendedCopy(t *testing.T) {
	var peers map[[16]byte]*Disk
	resolve := func(id []byte) (*Disk, bool) {
		d, ok := peers[[16]byte(id)]
		return d, ok
	}
	src, srcMem := newDisk(t, func(c *Config) { c.Peers = resolve })
	dst, dstMem := newDisk(t, func(c *Config) {
		c.Peers = resolve
		c.NAA = NAAFromName("other-lun")
		c.Serial = "other"
	})
	peers = map[[16]byte]*Disk{src.cfg.NAA: src, dst.cfg.NAA: dst}

	data := pattern(3000*512, 11)
	for i := 0; i < 3000; i += 200 {
		n := min(200, 3000-i)
		mustOK(t, src, cdb16(OpWrite16, uint64(i), uint32(n)), data[i*512:(i+n)*512])
	}
	// Copy 3000 blocks from src LBA 0 to dst LBA 500 (two segments), and
	// 4 blocks within src, run by the source disk.
	p := xcopyList(7, 0, [][]byte{cscd(src.cfg.NAA, 512), cscd(dst.cfg.NAA, 512)}, [][]byte{
		segment(0, 1, 2000, 0, 500),
		segment(0, 1, 1000, 2000, 2500),
		segment(0, 0xffff, 4, 0, 3500),
	})
	res := mustOK(t, src, xcopyCDB(len(p)), p)
	if res.Bytes != 3004*512 {
		t.Errorf("EXTENDED COPY moved %d bytes", res.Bytes)
	}
	if !bytes.Equal(dstMem.Bytes()[500*512:3500*512], data) {
		t.Error("destination does not hold the copied data")
	}
	if !bytes.Equal(srcMem.Bytes()[3500*512:3504*512], data[:4*512]) {
		t.Error("copy within the source disk failed")
	}
	// RECEIVE COPY RESULTS, COPY STATUS: completed, 3 segments, bytes.
	st := mustIn(t, src, copyResults(0x00, 7, 64), 64)
	if want := []byte{0, 0, 0, 8, 0x01, 0, 3, 0}; !bytes.Equal(st[:8], want) || be32(st[8:]) != 3004*512 {
		t.Errorf("COPY STATUS = % x", st)
	}
	_, err := exec(t, src, copyResults(0x00, 8, 64), make([]byte, 64))
	wantErr(t, err, ErrInvalidFieldInCDB, 2, 7)
	op := mustIn(t, src, copyResults(0x03, 0, 256), 256)
	golden(t, "copy_operating_parameters", op)
	if int(be32(op)) != len(op)-4 || be16(op[8:]) != xcopyMaxCSCDs || op[43] != 2 || !bytes.Equal(op[44:], []byte{0x02, 0xe4}) {
		t.Errorf("OPERATING PARAMETERS = % x", op)
	}

	// Errors.
	unknown := NAAFromName("nobody")
	tests := []struct {
		name       string
		list       []byte
		want       *Error
		field, bit int
	}{
		{"unreachable target", xcopyList(1, 0, [][]byte{cscd(unknown, 512)}, nil), ErrCopyTargetUnreachable, -1, -1},
		{"block length", xcopyList(1, 0, [][]byte{cscd(dst.cfg.NAA, 4096)}, nil), ErrInvalidFieldInParamList, 16 + 29, 7},
		{"CSCD type", xcopyList(1, 0, [][]byte{append([]byte{0xe0}, cscd(dst.cfg.NAA, 512)[1:]...)}, nil), ErrUnsupportedTargetDesc, 16, 7},
		{"segment type", xcopyList(1, 0, [][]byte{cscd(dst.cfg.NAA, 512)}, [][]byte{append([]byte{0x01}, segment(0, 0, 1, 0, 0)[1:]...)}), ErrUnsupportedSegmentDesc, 16 + 32, 7},
		{"CSCD index", xcopyList(1, 0, [][]byte{cscd(dst.cfg.NAA, 512)}, [][]byte{segment(0, 3, 1, 0, 0)}), ErrInvalidFieldInParamList, 16 + 32 + 6, 7},
		{"inline data", func() []byte { p := xcopyList(1, 0, nil, nil); p[15] = 1; return p }(), ErrInvalidFieldInParamList, 12, 7},
		{"list ID usage 11b with an ID", xcopyList(1, 3, nil, nil), ErrInvalidFieldInParamList, 0, 7},
		{"short", xcopyList(1, 0, nil, nil)[:10], ErrParamListLengthError, -1, -1},
		// SPC-5 RECEIVE COPY OPERATING PARAMETERS: descriptor lists
		// longer than MAXIMUM DESCRIPTOR LIST LENGTH (here 17 CSCDs
		// and 63 segments, 2308 > 2304 bytes) are PARAMETER LIST
		// LENGTH ERROR, whatever else is wrong with them; too many
		// CSCDs within that length are TOO MANY TARGET DESCRIPTORS.
		{"descriptor lists too long", xcopyList(1, 0, repeat(cscd(dst.cfg.NAA, 512), xcopyMaxCSCDs+1), repeat(segment(0, 0, 1, 0, 0), xcopyMaxSegments-1)), ErrParamListLengthError, -1, -1},
		{"too many CSCDs", xcopyList(1, 0, repeat(cscd(dst.cfg.NAA, 512), xcopyMaxCSCDs+1), nil), ErrTooManyTargetDescriptors, 2, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := exec(t, src, xcopyCDB(len(tt.list)), tt.list)
			wantErr(t, err, tt.want, tt.field, tt.bit)
		})
	}
	// A segment past the end of the destination aborts the copy.
	p = xcopyList(2, 0, [][]byte{cscd(dst.cfg.NAA, 512)}, [][]byte{segment(0xffff, 0, 10, 0, testBlocks-5)})
	_, err = exec(t, src, xcopyCDB(len(p)), p)
	wantErr(t, err, &Error{Key: KeyCopyAborted, ASC: 0x21}, -1, -1)
	st = mustIn(t, src, copyResults(0x00, 2, 64), 64)
	if st[4] != 0x02 {
		t.Errorf("COPY STATUS of a failed copy: % x", st)
	}
	// A read-only destination.
	dst.SetReadOnly(true)
	p = xcopyList(3, 2, [][]byte{cscd(dst.cfg.NAA, 512)}, [][]byte{segment(0xffff, 0, 1, 0, 0)})
	_, err = exec(t, src, xcopyCDB(len(p)), p)
	wantErr(t, err, &Error{Key: KeyCopyAborted, ASC: 0x27}, -1, -1)
	// Without Peers only the disk itself resolves.
	alone, _ := newDisk(t, nil)
	p = xcopyList(1, 0, [][]byte{cscd(dst.cfg.NAA, 512)}, nil)
	_, err = exec(t, alone, xcopyCDB(len(p)), p)
	wantErr(t, err, ErrCopyTargetUnreachable, -1, -1)
	p = xcopyList(1, 0, [][]byte{cscd(alone.cfg.NAA, 512)}, [][]byte{segment(0, 0, 1, 0, 1)})
	mustOK(t, alone, xcopyCDB(len(p)), p)
	mustOK(t, alone, xcopyCDB(0))
}

// copierMem is a memdisk that copies from other memdisks without a buffer,
// the way the file backend uses copy_file_range, or refuses with
// errors.ErrUnsupported.
type copierMem struct {
	*memdisk.Disk
	calls       int
	unsupported bool
}

func (c *copierMem) CopyFrom(src Backend, srcOff, dstOff, n int64) error {
	c.calls++
	if c.unsupported {
		return fmt.Errorf("copy from %T: %w", src, errors.ErrUnsupported)
	}
	b := make([]byte, n)
	if _, err := src.ReadAt([][]byte{b}, srcOff); err != nil {
		return err
	}
	_, err := c.WriteAt([][]byte{b}, dstOff)
	return err
}

// TestExtendedCopyOffload checks that EXTENDED COPY hands whole chunks to
// a destination that implements Copier, and falls back to reading and
// writing when it says the copy is unsupported.
func TestExtendedCopyOffload(t *testing.T) {
	for _, unsupported := range []bool{false, true} {
		var peers map[[16]byte]*Disk
		resolve := func(id []byte) (*Disk, bool) {
			d, ok := peers[[16]byte(id)]
			return d, ok
		}
		src, srcMem := newDisk(t, func(c *Config) { c.Peers = resolve })
		mem := memdisk.New(testBlocks*512, 512)
		cm := &copierMem{Disk: mem, unsupported: unsupported}
		dst, err := NewDisk(Config{BlockSize: 512, Blocks: testBlocks, WriteCache: true, Serial: "dst",
			NAA: NAAFromName("dst"), Peers: resolve}, cm)
		if err != nil {
			t.Fatal(err)
		}
		peers = map[[16]byte]*Disk{src.cfg.NAA: src, dst.cfg.NAA: dst}
		data := pattern(3000*512, 12)
		if _, err := srcMem.WriteAt([][]byte{data}, 0); err != nil {
			t.Fatal(err)
		}
		p := xcopyList(9, 0, [][]byte{cscd(src.cfg.NAA, 512), cscd(dst.cfg.NAA, 512)}, [][]byte{
			segment(0, 1, 3000, 0, 100),
		})
		res := mustOK(t, src, xcopyCDB(len(p)), p)
		if res.Bytes != 3000*512 {
			t.Errorf("unsupported=%v: EXTENDED COPY moved %d bytes", unsupported, res.Bytes)
		}
		if !bytes.Equal(mem.Bytes()[100*512:3100*512], data) {
			t.Errorf("unsupported=%v: destination does not hold the copied data", unsupported)
		}
		// 3000 blocks in 1 MiB (2048-block) chunks: 2 offloaded copies,
		// or 1 refused attempt before the buffered fallback.
		if want := map[bool]int{false: 2, true: 1}[unsupported]; cm.calls != want {
			t.Errorf("unsupported=%v: CopyFrom called %d times, want %d", unsupported, cm.calls, want)
		}
	}
}
