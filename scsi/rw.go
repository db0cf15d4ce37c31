// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"bytes"
	"errors"
	"fmt"
)

// checkTransfer fails with INVALID FIELD IN CDB, pointing at the transfer
// length, when c moves more blocks than the MAXIMUM TRANSFER LENGTH of
// the block limits VPD page (SBC-4).
func (d *Disk) checkTransfer(c *CDB, blocks uint64) error {
	if blocks > uint64(d.cfg.MaxTransferBlocks) {
		return cdbField(int(c.cmd.blocks.off), 7)
	}
	return nil
}

// checkAccess checks a media-access command's TRANSFER LENGTH against
// the block limits and its LBA range against the capacity.
func (d *Disk) checkAccess(c *CDB) error {
	if err := d.checkTransfer(c, uint64(c.Blocks)); err != nil {
		return err
	}
	return d.checkRange(c.LBA, uint64(c.Blocks))
}

// writeData validates a WRITE or WRITE AND VERIFY (limits, range, write
// protection) and returns its data-out buffers trimmed to the n bytes of
// the transfer; n is 0, with nothing to write, for a TRANSFER LENGTH of 0.
func (d *Disk) writeData(c *CDB, data [][]byte) (bufs [][]byte, n int64, err error) {
	if err := d.checkAccess(c); err != nil {
		return nil, 0, err
	}
	if err := d.checkWritable(); err != nil {
		return nil, 0, err
	}
	if c.Blocks == 0 {
		return nil, 0, nil
	}
	n = int64(c.Blocks) * d.bs
	bufs, err = writeBufs(c, data, n)
	return bufs, n, err
}

// read runs READ(6/10/12/16) (SBC-4-5.17). DPO is accepted and
// ignored; FUA needs nothing: every read goes to the backing store.
func (d *Disk) read(c *CDB, data [][]byte) (Result, error) { return d.readFrom(c, data, nil) }

// readFrom is read, from nr without blocking when nr is not nil (TryRead):
// then buffers that are not exactly the transfer, or nr's ErrWouldBlock,
// end it with ErrWouldBlock.
func (d *Disk) readFrom(c *CDB, data [][]byte, nr NowaitReader) (Result, error) {
	res := Result{Kind: KindRead, LBA: c.LBA, Blocks: c.Blocks}
	if err := d.checkAccess(c); err != nil {
		return res, err
	}
	if c.Blocks == 0 {
		// SBC-4: a TRANSFER LENGTH of 0 is not an error; it moves no
		// data, so any buffer the initiator offered stays zeros.
		zeroFrom(data, 0)
		return res, nil
	}
	n := int64(c.Blocks) * d.bs
	have := int64(bufLen(data))
	if have != n {
		if nr != nil {
			return Result{}, ErrWouldBlock
		}
		return d.readMismatch(c, data, res, n, have)
	}
	var got int
	var err error
	if nr != nil {
		got, err = nr.ReadAtNowait(data, int64(c.LBA)*d.bs)
		if errors.Is(err, ErrWouldBlock) {
			return Result{}, ErrWouldBlock
		}
	} else {
		got, err = d.be.ReadAt(data, int64(c.LBA)*d.bs)
	}
	res.Bytes, res.DataIn = got, got
	if err != nil {
		return res, fmt.Errorf("scsi: read LBA %d: %w", c.LBA, err)
	}
	return res, nil
}

// readMismatch runs a READ whose data-in buffers (have bytes: the iSCSI
// EXPECTED DATA TRANSFER LENGTH under TCMU) are not the n bytes its
// TRANSFER LENGTH asks for. SAM-5 and iSCSI (RFC 7143, residuals): the
// device server transfers what fits, in order, and the transport reports
// the difference. Longer buffers get the n bytes and DataIn = n, which
// the caller turns into an underflow residual (TCMU's rsp.read_len).
// Shorter ones get their first have bytes of the range, the last block
// only in part, and the rest of the buffers is zeroed; the residual of
// such an overflow is the kernel's to report, and TCMU has no field for
// it.
func (d *Disk) readMismatch(c *CDB, data [][]byte, res Result, n, have int64) (Result, error) {
	off := int64(c.LBA) * d.bs
	fill := min(have, n)
	whole := fill / d.bs * d.bs
	if whole > 0 {
		got, err := d.be.ReadAt(prefix(data, int(whole)), off)
		res.Bytes, res.DataIn = got, got
		if err != nil {
			return res, fmt.Errorf("scsi: read LBA %d: %w", c.LBA, err)
		}
	}
	if part := fill - whole; part > 0 {
		blk := make([]byte, d.bs)
		if _, err := d.be.ReadAt([][]byte{blk}, off+whole); err != nil {
			return res, fmt.Errorf("scsi: read LBA %d: %w", c.LBA+uint64(whole/d.bs), err)
		}
		skipScatter(data, int(whole), blk[:part])
		res.Bytes += int(d.bs)
		res.DataIn += int(part)
	}
	zeroFrom(data, res.DataIn)
	return res, nil
}

// writeBufs returns the data-out buffers holding exactly n bytes, or
// INVALID FIELD IN CDB (on the transfer length) when the initiator sent
// fewer bytes than the CDB asks to write.
func writeBufs(c *CDB, data [][]byte, n int64) ([][]byte, error) {
	have := int64(bufLen(data))
	switch {
	case have == n:
		return data, nil
	case have < n:
		return nil, cdbField(int(c.cmd.blocks.off), 7)
	}
	return prefix(data, int(n)), nil
}

// write runs WRITE(6/10/12/16) (SBC-4-5.43). With FUA, or with the
// write cache disabled (WCE=0), the range is synced before completion.
func (d *Disk) write(c *CDB, data [][]byte) (Result, error) {
	res := Result{Kind: KindWrite, LBA: c.LBA, Blocks: c.Blocks}
	bufs, n, err := d.writeData(c, data)
	if err != nil || n == 0 {
		return res, err
	}
	res.Bytes, err = d.writeAt(bufs, int64(c.LBA)*d.bs, n, c.FUA())
	return res, err
}

// writeAt writes bufs (n bytes) at off, ordered against COMPARE AND
// WRITE, then syncs the range if fua or the write cache is off.
func (d *Disk) writeAt(bufs [][]byte, off, n int64, fua bool) (int, error) {
	d.writeMu.RLock()
	got, err := d.be.WriteAt(bufs, off)
	d.writeMu.RUnlock()
	if err != nil {
		return got, fmt.Errorf("scsi: write at byte %d: %w", off, err)
	}
	return got, d.syncIf(fua, off, n)
}

// copyFrom has c (d's backend) copy n bytes at srcOff of src to dstOff,
// as a write of d: under the write lock's shared side, and synced when
// the write cache is off.
func (d *Disk) copyFrom(c Copier, src Backend, srcOff, dstOff, n int64) error {
	d.writeMu.RLock()
	err := c.CopyFrom(src, srcOff, dstOff, n)
	d.writeMu.RUnlock()
	if err != nil {
		return fmt.Errorf("scsi: copy to byte %d: %w", dstOff, err)
	}
	return d.syncIf(false, dstOff, n)
}

// syncIf syncs [off, off+n) if force is set or the write cache is
// disabled.
func (d *Disk) syncIf(force bool, off, n int64) error {
	if !force && d.wce.Load() {
		return nil
	}
	if err := d.be.Sync(off, n); err != nil {
		return fmt.Errorf("scsi: sync at byte %d: %w", off, err)
	}
	return nil
}

// chunkBlocks is how many blocks VERIFY and the other read-back commands
// read at a time: bounded temporary memory for any length.
func (d *Disk) chunkBlocks() int64 { return max(1, (1<<20)/d.bs) }

// eachChunk reads blocks [lba, lba+n) in chunks and calls fn with the
// byte offset of each chunk from the start of the range and its data.
func (d *Disk) eachChunk(lba uint64, n uint64, fn func(pos int64, b []byte) error) error {
	chunk := d.chunkBlocks()
	buf := make([]byte, min(int64(n), chunk)*d.bs)
	bufs := [][]byte{nil}
	for done := uint64(0); done < n; {
		k := min(int64(n-done), chunk)
		bufs[0] = buf[:k*d.bs]
		off := int64(lba+done) * d.bs
		if _, err := d.be.ReadAt(bufs, off); err != nil {
			return fmt.Errorf("scsi: read at byte %d: %w", off, err)
		}
		if err := fn(int64(done)*d.bs, bufs[0]); err != nil {
			return err
		}
		done += uint64(k)
	}
	return nil
}

// mismatch returns the offset of the first byte where a and b differ, or
// -1 (they have the same length).
func mismatch(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// bytchk is the BYTCHK field (byte 1, bits 2-1) of VERIFY and WRITE AND
// VERIFY.
func bytchk(c *CDB) uint8 { return c.raw[1] >> 1 & 3 }

// verify runs VERIFY(10/12/16) (SBC-4-5.32). BYTCHK 00b reads the
// range back; 01b compares it with the data-out buffer; 11b compares each
// block with the single block of data-out. A difference is MISCOMPARE
// DURING VERIFY OPERATION with the byte offset of the first differing byte
// in the INFORMATION field. BYTCHK 10b is reserved.
func (d *Disk) verify(c *CDB, data [][]byte) (Result, error) {
	res := Result{Kind: KindRead, LBA: c.LBA, Blocks: c.Blocks}
	chk := bytchk(c)
	if chk == 2 {
		return res, cdbField(1, 2)
	}
	// SBC-4: MAXIMUM TRANSFER LENGTH bounds VERIFY too, with or
	// without data.
	if err := d.checkAccess(c); err != nil {
		return res, err
	}
	if c.Blocks == 0 {
		return res, nil
	}
	var want []byte
	switch chk {
	case 1:
		n := int64(c.Blocks) * d.bs
		if int64(bufLen(data)) < n {
			return res, cdbField(int(c.cmd.blocks.off), 7)
		}
		want = gather(data, int(n))
	case 3:
		if int64(bufLen(data)) < d.bs {
			return res, cdbField(int(c.cmd.blocks.off), 7)
		}
		want = gather(data, int(d.bs))
	}
	err := d.eachChunk(c.LBA, uint64(c.Blocks), func(pos int64, b []byte) error {
		switch chk {
		case 1:
			if i := mismatch(b, want[pos:pos+int64(len(b))]); i >= 0 {
				return ErrMiscompare.WithInfo(uint64(pos) + uint64(i))
			}
		case 3:
			for o := int64(0); o < int64(len(b)); o += d.bs {
				if i := mismatch(b[o:o+d.bs], want); i >= 0 {
					return ErrMiscompare.WithInfo(uint64(pos+o) + uint64(i))
				}
			}
		}
		return nil
	})
	return res, err
}

// writeAndVerify runs WRITE AND VERIFY(10/12/16) (SBC-4-5.46): the
// data is written through to the medium, read back and, with BYTCHK 01b,
// compared with the data-out buffer.
func (d *Disk) writeAndVerify(c *CDB, data [][]byte) (Result, error) {
	res := Result{Kind: KindWrite, LBA: c.LBA, Blocks: c.Blocks}
	bufs, n, err := d.writeData(c, data)
	if err != nil || n == 0 {
		return res, err
	}
	if res.Bytes, err = d.writeAt(bufs, int64(c.LBA)*d.bs, n, true); err != nil {
		return res, err
	}
	var want []byte
	if bytchk(c) == 1 {
		want = gather(bufs, int(n))
	}
	err = d.eachChunk(c.LBA, uint64(c.Blocks), func(pos int64, b []byte) error {
		if want == nil {
			return nil
		}
		if i := mismatch(b, want[pos:pos+int64(len(b))]); i >= 0 {
			return ErrMiscompare.WithInfo(uint64(pos) + uint64(i))
		}
		return nil
	})
	return res, err
}

// preFetch runs PRE-FETCH(10/16) (SBC-4). The disk has no cache
// of its own to load, which SBC-4 allows: it checks the PREFETCH LENGTH
// against the MAXIMUM PREFETCH LENGTH of the block limits VPD page and the
// range, and returns GOOD (not CONDITION MET).
func (d *Disk) preFetch(c *CDB, data [][]byte) (Result, error) {
	return Result{LBA: c.LBA, Blocks: c.Blocks}, d.checkAccess(c)
}

// synchronizeCache runs SYNCHRONIZE CACHE(10/16) (SBC-4): a
// NUMBER OF LOGICAL BLOCKS of 0 means through the last LBA. IMMED is
// accepted; the sync is done before completion either way.
func (d *Disk) synchronizeCache(c *CDB, data [][]byte) (Result, error) {
	res := Result{Kind: KindSync, LBA: c.LBA, Blocks: c.Blocks}
	if err := d.checkRange(c.LBA, uint64(c.Blocks)); err != nil {
		return res, err
	}
	off, n := int64(c.LBA)*d.bs, int64(c.Blocks)*d.bs
	if c.Blocks == 0 && c.LBA != 0 {
		n = int64(d.capacity()-c.LBA) * d.bs
	}
	if err := d.be.Sync(off, n); err != nil {
		return res, fmt.Errorf("scsi: sync LBA %d: %w", c.LBA, err)
	}
	return res, nil
}
