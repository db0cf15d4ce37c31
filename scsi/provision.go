// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"bytes"
	"fmt"
)

// writeSame runs WRITE SAME(10/16) (SBC-4): the one block of
// data-out (zeros with NDOB) is written to every block of the range. With
// UNMAP on a thin-provisioned disk a zero block deallocates the range
// instead (LBPRZ=1: it reads back as the same zeros); a non-zero block is
// written. UNMAP without logical block provisioning is INVALID FIELD IN
// CDB; so is a NUMBER OF LOGICAL BLOCKS of 0 (WSNZ=1) or above the
// MAXIMUM WRITE SAME LENGTH. ANCHOR is rejected by the CDB table
// (ANC_SUP=0).
func (d *Disk) writeSame(c *CDB, data [][]byte) (Result, error) {
	res := Result{Kind: KindWriteSame, LBA: c.LBA, Blocks: c.Blocks}
	unmap := c.raw[1]&0x08 != 0
	ndob := c.Op == OpWriteSame16 && c.raw[1]&0x01 != 0
	lenByte := int(c.cmd.blocks.off)
	if c.Blocks == 0 || c.Blocks > d.cfg.MaxWriteSameBlocks {
		return res, cdbField(lenByte, 7)
	}
	if unmap && !d.cfg.ThinProvisioning {
		return res, cdbField(1, 3)
	}
	if err := d.checkRange(c.LBA, uint64(c.Blocks)); err != nil {
		return res, err
	}
	if err := d.checkWritable(); err != nil {
		return res, err
	}
	// SBC-4: the Data-Out Buffer of WRITE SAME is exactly one logical
	// block, and there is none with NDOB.
	if have := int64(bufLen(data)); ndob && have != 0 || !ndob && have != d.bs {
		return res, errDataOutSize
	}
	pattern := make([]byte, d.bs)
	if !ndob {
		scatter([][]byte{pattern}, gather(data, int(d.bs)))
	}
	zero := allZero(pattern)
	off, n := int64(c.LBA)*d.bs, int64(c.Blocks)*d.bs

	d.writeMu.RLock()
	var err error
	switch {
	case zero && unmap:
		res.Kind = KindUnmap
		err = d.be.Unmap(off, n)
	case zero && d.zeroer != nil:
		err = d.zeroer.WriteZeroes(off, n)
		res.Bytes = int(n)
	default:
		err = d.fill(pattern, off, n)
		res.Bytes = int(n)
	}
	d.writeMu.RUnlock()
	if err != nil {
		return res, fmt.Errorf("scsi: write same LBA %d: %w", c.LBA, err)
	}
	return res, d.syncIf(false, off, n)
}

// fill writes pattern (one block) over [off, off+n) in chunks of at most
// chunkBlocks blocks.
func (d *Disk) fill(pattern []byte, off, n int64) error {
	k := min(n/d.bs, d.chunkBlocks())
	buf := bytes.Repeat(pattern, int(k))
	for done := int64(0); done < n; {
		m := min(int64(len(buf)), n-done)
		if _, err := d.be.WriteAt([][]byte{buf[:m]}, off+done); err != nil {
			return err
		}
		done += m
	}
	return nil
}

// errDataOutSize is the error for a data-out buffer whose length is not the
// one the CDB implies (the iSCSI EXPECTED DATA TRANSFER LENGTH, or another
// transport's, disagrees with it): ILLEGAL REQUEST, INVALID FIELD IN
// COMMAND INFORMATION UNIT (SPC-5), the command IU being where that
// length is. SAM-5 would let the device server use what it needs and the
// transport report the rest as a residual, but TCMU has no way to report
// a residual for data-out (rsp.read_len is for data-in only): GOOD would
// tell the initiator that its whole buffer was used. LIO rejects such
// writes itself for the same reason (target_cmd_size_check).
var errDataOutSize = ErrInvalidFieldInCmdIU

func allZero(b []byte) bool {
	for _, v := range b {
		if v != 0 {
			return false
		}
	}
	return true
}

// unmap runs UNMAP (SBC-4). A PARAMETER LIST LENGTH of 0 does
// nothing; 1 to 7 is PARAMETER LIST LENGTH ERROR, as is a BLOCK
// DESCRIPTOR DATA LENGTH beyond the list. More descriptors or blocks than
// the block limits VPD page allows is INVALID FIELD IN PARAMETER LIST; a
// range past the end is LBA OUT OF RANGE. Every descriptor is checked
// before any block is deallocated. A truncated last descriptor is ignored.
func (d *Disk) unmap(c *CDB, data [][]byte) (Result, error) {
	res := Result{Kind: KindUnmap}
	if c.Length == 0 {
		return res, nil
	}
	if err := d.checkWritable(); err != nil {
		return res, err
	}
	p := paramList(data, c.Length)
	if c.Length < 8 || len(p) < 8 {
		return res, ErrParamListLengthError
	}
	dataLen, bdl := int(be16(p[0:])), int(be16(p[2:]))
	if dataLen > len(p)-2 || bdl > len(p)-8 {
		return res, ErrParamListLengthError
	}
	if be32(p[4:]) != 0 {
		return res, paramField(4, 7)
	}
	count := bdl / 16
	if count > int(d.cfg.MaxUnmapDescriptors) {
		return res, paramField(2, 7)
	}
	var total uint64
	for i := 0; i < count; i++ {
		o := 8 + 16*i
		lba, n := be64(p[o:]), uint64(be32(p[o+8:]))
		if be32(p[o+12:]) != 0 {
			return res, paramField(o+12, 7)
		}
		total += n
		if total > uint64(d.cfg.MaxUnmapBlocks) {
			return res, paramField(o+8, 7)
		}
		// SBC-4: LBA + NUMBER OF LOGICAL BLOCKS beyond the
		// capacity is out of range; a count of 0 is not an error.
		if c := d.capacity(); lba > c || n > c-lba {
			return res, ErrLBAOutOfRange
		}
		if i == 0 {
			res.LBA = lba
		}
	}
	res.Blocks = uint32(total)
	d.writeMu.RLock()
	defer d.writeMu.RUnlock()
	for i := 0; i < count; i++ {
		o := 8 + 16*i
		lba, n := be64(p[o:]), int64(be32(p[o+8:]))
		if n == 0 {
			continue
		}
		if err := d.be.Unmap(int64(lba)*d.bs, n*d.bs); err != nil {
			return res, fmt.Errorf("scsi: unmap LBA %d: %w", lba, err)
		}
	}
	return res, nil
}

// maxLBAStatusDescs bounds the descriptors of one GET LBA STATUS reply.
const maxLBAStatusDescs = 256

// getLBAStatus runs GET LBA STATUS(16) (SBC-4): descriptors of
// alternating mapped (0h) and deallocated (1h) extents from the STARTING
// LOGICAL BLOCK ADDRESS, as many as the allocation length holds (at most
// maxLBAStatusDescs), ending at the last LBA.
func (d *Disk) getLBAStatus(c *CDB, data [][]byte) (Result, error) {
	capacity := d.capacity()
	if c.LBA >= capacity {
		return Result{}, ErrLBAOutOfRange
	}
	want := 1
	if c.Length > 24 {
		want = min(int(c.Length-8)/16, maxLBAStatusDescs)
	}
	b := make([]byte, 8, 8+16*want)
	lba := c.LBA
	for n := 0; n < want && lba < capacity; {
		mapped, ext, err := d.be.Mapped(int64(lba) * d.bs)
		if err != nil {
			return Result{}, fmt.Errorf("scsi: get LBA status at LBA %d: %w", lba, err)
		}
		blocks := min(max(uint64(ext/d.bs), 1), capacity-lba)
		status := byte(0x0)
		if !mapped {
			status = 0x1
		}
		// Merge with the previous descriptor if the state is the same
		// and the count still fits.
		if n > 0 {
			prev := b[len(b)-16:]
			if prev[12] == status && uint64(be32(prev[8:]))+blocks <= 0xffffffff {
				put32(prev[8:], be32(prev[8:])+uint32(blocks))
				lba += blocks
				continue
			}
		}
		blocks = min(blocks, 0xffffffff)
		var desc [16]byte
		put64(desc[0:], lba)
		put32(desc[8:], uint32(blocks))
		desc[12] = status
		b = append(b, desc[:]...)
		lba += blocks
		n++
	}
	put32(b, uint32(len(b)-4))
	return reply(data, b, c.Length), nil
}

// compareAndWrite runs COMPARE AND WRITE (SBC-4): the data-out buffer
// holds NUMBER OF LOGICAL BLOCKS of verify data, then as many of write
// data. The range is read and compared with the verify data; if equal the
// write data is written, else MISCOMPARE DURING VERIFY OPERATION gives
// the offset of the first differing byte. Read, compare and write hold
// the disk's write lock exclusively, so no other write to the disk (and
// so to the range) can come between them.
func (d *Disk) compareAndWrite(c *CDB, data [][]byte) (Result, error) {
	res := Result{Kind: KindCompareAndWrite, LBA: c.LBA, Blocks: c.Blocks}
	if c.Blocks == 0 {
		// SBC-4: not an error, nothing is compared or transferred;
		// data-out offered anyway is the wrong size (see below).
		if bufLen(data) != 0 {
			return res, errDataOutSize
		}
		return res, nil
	}
	if c.Blocks > uint32(min(maxCompareAndWriteBl, d.cfg.MaxTransferBlocks/2)) {
		return res, cdbField(13, 7)
	}
	if err := d.checkRange(c.LBA, uint64(c.Blocks)); err != nil {
		return res, err
	}
	if err := d.checkWritable(); err != nil {
		return res, err
	}
	n := int64(c.Blocks) * d.bs
	// SBC-4: the Data-Out Buffer holds the verify data and the write
	// data, NUMBER OF LOGICAL BLOCKS each: exactly 2 x n bytes.
	if int64(bufLen(data)) != 2*n {
		return res, errDataOutSize
	}
	buf := gather(data, int(2*n))
	verify, write := buf[:n], buf[n:]
	cur := make([]byte, n)
	off := int64(c.LBA) * d.bs

	d.writeMu.Lock()
	if _, err := d.be.ReadAt([][]byte{cur}, off); err != nil {
		d.writeMu.Unlock()
		return res, fmt.Errorf("scsi: compare and write: read LBA %d: %w", c.LBA, err)
	}
	if i := mismatch(cur, verify); i >= 0 {
		d.writeMu.Unlock()
		return res, ErrMiscompare.WithInfo(uint64(i))
	}
	got, err := d.be.WriteAt([][]byte{write}, off)
	d.writeMu.Unlock()
	res.Bytes = got
	if err != nil {
		return res, fmt.Errorf("scsi: compare and write: write LBA %d: %w", c.LBA, err)
	}
	return res, d.syncIf(c.FUA(), off, n)
}
