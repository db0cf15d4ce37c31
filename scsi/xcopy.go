// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"errors"
	"fmt"
	"math/bits"
)

// EXTENDED COPY(LID1) (SPC-4, SPC-5): the disk is a copy
// manager for block-to-block copies (segment descriptor 02h) between
// logical units named by identification descriptor CSCD descriptors (E4h)
// with an NAA designator: this disk, or another disk of the same daemon
// found through Config.Peers. The copy runs to completion before the
// command does; RECEIVE COPY RESULTS reports it afterwards.
const (
	xcopyHeaderLen   = 16
	cscdLen          = 32
	segB2BLen        = 28 // segment descriptor 02h, including its header
	xcopyMaxCSCDs    = 16
	xcopyMaxSegments = 64
	cscdIDMe         = 0xFFFF // SPC-5: the copy manager's own LU
	// xcopyMaxDescListLen is the MAXIMUM DESCRIPTOR LIST LENGTH: room
	// for the most CSCD and segment descriptors.
	xcopyMaxDescListLen = xcopyMaxCSCDs*cscdLen + xcopyMaxSegments*segB2BLen
)

// copyStatus is the outcome of an EXTENDED COPY, kept for RECEIVE COPY
// RESULTS.
type copyStatus struct {
	running  bool
	failed   bool
	segments uint16
	bytes    uint64
}

// copySeg is one validated block-to-block segment.
type copySeg struct {
	src, dst       *Disk
	srcLBA, dstLBA uint64
	blocks         uint64
}

// copyAborted turns e into the COPY ABORTED error that ends a copy during
// segment processing (SPC-5).
func copyAborted(e *Error) *Error {
	c := *e
	c.Key = KeyCopyAborted
	return &c
}

// extendedCopy runs EXTENDED COPY(LID1).
func (d *Disk) extendedCopy(c *CDB, data [][]byte) (Result, error) {
	res := Result{Kind: KindWrite}
	if c.Length == 0 {
		return res, nil
	}
	p := paramList(data, c.Length)
	if len(p) < int(c.Length) || len(p) < xcopyHeaderLen {
		return res, ErrParamListLengthError
	}
	listID := p[0]
	usage := p[1] >> 3 & 3
	switch {
	case p[1]&0xc0 != 0:
		return res, paramField(1, 7)
	case usage == 1:
		return res, paramField(1, 4)
	case usage == 3 && listID != 0:
		return res, paramField(0, 7)
	}
	cscdBytes := int(be16(p[2:]))
	if be32(p[4:]) != 0 {
		return res, paramField(4, 7)
	}
	segBytes := int(be32(p[8:]))
	if be32(p[12:]) != 0 {
		return res, paramField(12, 7) // INLINE DATA LENGTH: no inline data
	}
	// SPC-5 (RECEIVE COPY OPERATING PARAMETERS, MAXIMUM DESCRIPTOR
	// LIST LENGTH): CSCD and segment descriptor lists longer than it
	// together are PARAMETER LIST LENGTH ERROR. The lengths are checked
	// before the descriptors are counted or parsed, as LIO's copy
	// manager does: a list that is too long is wrong whatever it holds.
	if cscdBytes+segBytes > xcopyMaxDescListLen {
		return res, ErrParamListLengthError
	}
	if cscdBytes%cscdLen != 0 {
		return res, paramField(2, 7)
	}
	if cscdBytes/cscdLen > xcopyMaxCSCDs {
		return res, ErrTooManyTargetDescriptors.WithField(false, 2, 7)
	}
	if segBytes > xcopyMaxSegments*segB2BLen {
		return res, ErrTooManySegmentDescs.WithField(false, 8, 7)
	}
	if xcopyHeaderLen+cscdBytes+segBytes > len(p) {
		return res, ErrParamListLengthError
	}

	var disks []*Disk
	for off := xcopyHeaderLen; off < xcopyHeaderLen+cscdBytes; off += cscdLen {
		t, err := d.parseCSCD(p[off:off+cscdLen], off)
		if err != nil {
			return res, err
		}
		disks = append(disks, t)
	}
	var segs []copySeg
	for off := xcopyHeaderLen + cscdBytes; off < xcopyHeaderLen+cscdBytes+segBytes; {
		if len(segs) == xcopyMaxSegments {
			return res, ErrTooManySegmentDescs.WithField(false, 8, 7)
		}
		s, n, err := d.parseSegment(p[off:xcopyHeaderLen+cscdBytes+segBytes], off, disks)
		if err != nil {
			return res, err
		}
		segs = append(segs, s)
		off += n
	}

	if usage != 3 {
		d.copyMu.Lock()
		if d.copies[listID].running {
			d.copyMu.Unlock()
			return res, ErrOperationInProgress
		}
		if d.copies == nil {
			d.copies = make(map[uint8]copyStatus)
		}
		d.copies[listID] = copyStatus{running: true}
		d.copyMu.Unlock()
	}
	st := copyStatus{}
	err := d.runCopy(segs, &st)
	res.Bytes = int(min(st.bytes, uint64(^uint(0)>>1)))
	if usage != 3 {
		st.failed = err != nil
		d.copyMu.Lock()
		d.copies[listID] = st
		d.copyMu.Unlock()
	}
	return res, err
}

// parseCSCD resolves an identification descriptor CSCD descriptor (E4h,
// SPC-5) at parameter list offset off to a disk.
func (d *Disk) parseCSCD(b []byte, off int) (*Disk, error) {
	if b[0] != 0xE4 {
		return nil, ErrUnsupportedTargetDesc.WithField(false, off, 7)
	}
	// Byte 1: LU ID TYPE (7-6), NUL (5), PERIPHERAL DEVICE TYPE (4-0).
	if b[1]&0x20 != 0 || b[1]&0x1f != 0 {
		return nil, paramField(off+1, 5)
	}
	// Designation descriptor at byte 4: binary code set, LU association,
	// NAA designator of 16 bytes (NAA 6).
	if b[4]&0x0f != 0x1 {
		return nil, paramField(off+4, 3)
	}
	if b[5]&0x30 != 0 || b[5]&0x0f != 0x3 {
		return nil, paramField(off+5, 5)
	}
	if b[7] != 16 {
		return nil, paramField(off+7, 7)
	}
	id := b[8:24]
	t, ok := d.resolve(id)
	if !ok {
		return nil, ErrCopyTargetUnreachable
	}
	// Block device type specific parameters (SPC-4): PAD, DISK
	// BLOCK LENGTH in bytes 29-31.
	bl := uint32(b[29])<<16 | uint32(b[30])<<8 | uint32(b[31])
	if bl != t.cfg.BlockSize {
		return nil, paramField(off+29, 7)
	}
	return t, nil
}

// resolve finds the disk with NAA designator id.
func (d *Disk) resolve(id []byte) (*Disk, bool) {
	if string(id) == string(d.cfg.NAA[:]) {
		return d, true
	}
	if d.cfg.Peers != nil {
		if t, ok := d.cfg.Peers(id); ok && t != nil {
			return t, true
		}
	}
	return nil, false
}

// parseSegment decodes the segment descriptor at the start of b (parameter
// list offset off) and returns it with its length.
func (d *Disk) parseSegment(b []byte, off int, disks []*Disk) (copySeg, int, error) {
	var s copySeg
	if len(b) < 4 {
		return s, 0, ErrParamListLengthError
	}
	if b[0] != 0x02 {
		return s, 0, ErrUnsupportedSegmentDesc.WithField(false, off, 7)
	}
	if be16(b[2:]) != segB2BLen-4 {
		return s, 0, paramField(off+2, 7)
	}
	if len(b) < segB2BLen {
		return s, 0, ErrParamListLengthError
	}
	if b[1]&^0x03 != 0 {
		return s, 0, paramField(off+1, bits.Len8(b[1])-1)
	}
	pick := func(i int) (*Disk, error) {
		id := be16(b[i:])
		switch {
		case id == cscdIDMe:
			return d, nil
		case int(id) < len(disks):
			return disks[id], nil
		}
		return nil, paramField(off+i, 7)
	}
	var err error
	if s.src, err = pick(4); err != nil {
		return s, 0, err
	}
	if s.dst, err = pick(6); err != nil {
		return s, 0, err
	}
	if s.src.cfg.BlockSize != s.dst.cfg.BlockSize {
		return s, 0, paramField(off+6, 7)
	}
	s.blocks = uint64(be16(b[10:]))
	s.srcLBA, s.dstLBA = be64(b[12:]), be64(b[20:])
	return s, segB2BLen, nil
}

// runCopy copies segs in order, counting progress in st.
func (d *Disk) runCopy(segs []copySeg, st *copyStatus) error {
	for _, s := range segs {
		for _, t := range []*Disk{s.src, s.dst} {
			switch {
			case t.offline.Load():
				return copyAborted(ErrNotReadyManual)
			case t.stopped.Load():
				return copyAborted(ErrNotReadyStopped)
			}
		}
		if err := s.src.checkRange(s.srcLBA, s.blocks); err != nil && s.blocks > 0 {
			return copyAborted(ErrLBAOutOfRange)
		}
		if err := s.dst.checkRange(s.dstLBA, s.blocks); err != nil && s.blocks > 0 {
			return copyAborted(ErrLBAOutOfRange)
		}
		if err := s.dst.checkWritable(); err != nil {
			return copyAborted(ErrWriteProtected)
		}
		bs := s.src.bs
		var buf []byte
		copier, offload := s.dst.be.(Copier)
		for done := uint64(0); done < s.blocks; {
			k := min(s.blocks-done, uint64(d.chunkBlocks()))
			if offload {
				n := int64(k) * bs
				err := s.dst.copyFrom(copier, s.src.be, int64(s.srcLBA+done)*bs, int64(s.dstLBA+done)*bs, n)
				switch {
				case err == nil:
					done += k
					st.bytes += uint64(n)
					continue
				case errors.Is(err, errors.ErrUnsupported):
					offload = false // copy through a buffer from here on
				default:
					return fmt.Errorf("scsi: extended copy: %w", err)
				}
			}
			if buf == nil {
				buf = make([]byte, int64(k)*bs)
			}
			chunk := [][]byte{buf[:int64(k)*bs]}
			if _, err := s.src.be.ReadAt(chunk, int64(s.srcLBA+done)*bs); err != nil {
				return fmt.Errorf("scsi: extended copy: read: %w", err)
			}
			n := int64(k) * bs
			if _, err := s.dst.writeAt(chunk, int64(s.dstLBA+done)*bs, n, false); err != nil {
				return fmt.Errorf("scsi: extended copy: %w", err)
			}
			done += k
			st.bytes += uint64(n)
		}
		st.segments++
	}
	return nil
}

// receiveCopyResults runs RECEIVE COPY RESULTS (SPC-4) with the
// COPY STATUS and OPERATING PARAMETERS service actions.
func (d *Disk) receiveCopyResults(c *CDB, data [][]byte) (Result, error) {
	var b []byte
	switch c.ServiceAction {
	case SACopyStatusLID1:
		d.copyMu.Lock()
		st, ok := d.copies[c.raw[2]]
		d.copyMu.Unlock()
		if !ok {
			return Result{}, cdbField(2, 7) // no such LIST IDENTIFIER
		}
		b = make([]byte, 12)
		put32(b, 8) // AVAILABLE DATA
		switch {
		case st.running:
			b[4] = 0x00
		case st.failed:
			b[4] = 0x02
		default:
			b[4] = 0x01
		}
		put16(b[5:], st.segments)
		// TRANSFER COUNT UNITS: the smallest power of 2^10 that fits.
		units, count := byte(0), st.bytes
		for count > 0xffffffff {
			units++
			count >>= 10
		}
		b[7] = units
		put32(b[8:], uint32(count))
	case SAOperatingParameters:
		b = make([]byte, 44, 46)
		b[4] = 0x01 // SNLID: LIST ID USAGE 11b is supported
		put16(b[8:], xcopyMaxCSCDs)
		put16(b[10:], xcopyMaxSegments)
		put32(b[12:], xcopyMaxDescListLen)
		put32(b[16:], uint32(0xffff*d.bs)) // MAXIMUM SEGMENT LENGTH
		put16(b[34:], 1)                   // TOTAL CONCURRENT COPIES
		b[36] = 1                          // MAXIMUM CONCURRENT COPIES
		b[37] = byte(bits.TrailingZeros32(d.cfg.BlockSize))
		b = append(b, 0x02, 0xE4) // implemented descriptor type codes
		b[43] = 2
		put32(b, uint32(len(b)-4))
	}
	return reply(data, b, c.Length), nil
}
