// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"fmt"
	"math/bits"
)

// startStopUnit runs START STOP UNIT (SBC-4) with POWER CONDITION 0:
// START=0 stops the unit (media access then fails with NOT READY,
// INITIALIZING COMMAND REQUIRED), after syncing the cache unless
// NO_FLUSH; START=1 starts it. LOEJ and power conditions are not
// supported. IMMED is accepted; the command completes synchronously.
func (d *Disk) startStopUnit(c *CDB, data [][]byte) (Result, error) {
	start := c.raw[4]&0x01 != 0
	noFlush := c.raw[4]&0x04 != 0
	if !start && !noFlush && !d.offline.Load() {
		if err := d.be.Sync(0, 0); err != nil {
			return Result{Kind: KindSync}, fmt.Errorf("scsi: sync before stop: %w", err)
		}
	}
	d.stopped.Store(!start)
	return Result{}, nil
}

// preventAllow runs PREVENT ALLOW MEDIUM REMOVAL (SBC-4). The medium
// is not removable (RMB=0), so PREVENT 00b and 01b have no effect; the
// obsolete values 10b and 11b are rejected by the CDB table.
func (d *Disk) preventAllow(c *CDB, data [][]byte) (Result, error) {
	return Result{}, nil
}

// sendDiagnostic runs SEND DIAGNOSTIC (SPC-5). Without a parameter list
// it runs the default self-test (SELFTEST=1, SELF-TEST CODE 000b) or a
// foreground short or extended self-test (101b, 110b), which check that
// the backing store answers a read of the first block. Background
// self-tests need the self-test results log page, which the disk does not
// have. With PF and a parameter list, the only diagnostic page is the
// Supported Diagnostic Pages page (00h), which asks for nothing.
func (d *Disk) sendDiagnostic(c *CDB, data [][]byte) (Result, error) {
	code := c.raw[1] >> 5
	pf := c.raw[1]&0x10 != 0
	selfTest := c.raw[1]&0x04 != 0
	if c.Length != 0 {
		if !pf || selfTest || code != 0 {
			return Result{}, cdbField(3, 7)
		}
		p := paramList(data, c.Length)
		if len(p) < int(c.Length) || len(p) < 4 {
			return Result{}, ErrParamListLengthError
		}
		// Diagnostic page header: PAGE CODE, page specific, PAGE LENGTH.
		if p[0] != 0x00 {
			return Result{}, paramField(0, 7)
		}
		if int(be16(p[2:])) != len(p)-4 {
			return Result{}, paramField(2, 7)
		}
		return Result{}, nil
	}
	switch {
	case selfTest && code != 0:
		return Result{}, cdbField(1, 7)
	case !selfTest && code != 0 && code != 5 && code != 6:
		return Result{}, cdbField(1, 7)
	case !selfTest && code == 0:
		return Result{}, nil // no page to act on: nothing to do
	}
	if d.offline.Load() {
		return Result{}, ErrNotReadyManual
	}
	buf := make([]byte, d.bs)
	if _, err := d.be.ReadAt([][]byte{buf}, 0); err != nil {
		return Result{}, fmt.Errorf("scsi: self-test read: %w", err)
	}
	return Result{}, nil
}

// receiveDiagnosticResults runs RECEIVE DIAGNOSTIC RESULTS (SPC-5): the
// Supported Diagnostic Pages page (00h), which lists only itself, whether
// asked for with PCV or as the result of the last SEND DIAGNOSTIC.
func (d *Disk) receiveDiagnosticResults(c *CDB, data [][]byte) (Result, error) {
	if c.raw[1]&0x01 != 0 && c.raw[2] != 0x00 {
		return Result{}, cdbField(2, 7)
	}
	return reply(data, []byte{0x00, 0x00, 0x00, 0x01, 0x00}, c.Length), nil
}

// formatUnit runs FORMAT UNIT (SBC-4) without protection
// information. With FMTDATA the parameter list is a short (4-byte) or,
// with LONGLIST, long (8-byte) header that may set IMMED but no defect
// list, initialization pattern or protection fields. Formatting keeps the
// block size and capacity; on a thin-provisioned disk it deallocates
// every block (which then reads as zeros), otherwise the data is left as
// it is, which SBC-4 allows without an initialization pattern.
func (d *Disk) formatUnit(c *CDB, data [][]byte) (Result, error) {
	longList := c.raw[1]&0x20 != 0
	fmtData := c.raw[1]&0x10 != 0
	if err := d.checkWritable(); err != nil {
		return Result{}, err
	}
	if fmtData {
		n := 4
		if longList {
			n = 8
		}
		p := paramList(data, uint32(n))
		if len(p) < n {
			return Result{}, ErrParamListLengthError
		}
		// SBC-4: PROTECTION FIELD USAGE (byte 0 bits 2-0) must
		// be 0; byte 1: FOV, DPRY, DCRT, STPF, IP, obsolete, IMMED,
		// vendor specific.
		if p[0] != 0 {
			return Result{}, paramField(0, 7)
		}
		// FOV=0 requires DPRY, DCRT, STPF and IP to be zero; IP (an
		// initialization pattern), the obsolete bit and the vendor
		// specific bit are not supported.
		if p[1]&0x80 == 0 && p[1]&0x78 != 0 {
			return Result{}, paramField(1, bits.Len8(p[1]&0x78)-1)
		}
		if bad := p[1] & 0x0d; bad != 0 {
			return Result{}, paramField(1, bits.Len8(bad)-1)
		}
		if be16(p[2:]) != 0 {
			return Result{}, paramField(2, 7) // DEFECT LIST LENGTH
		}
		if longList && (p[4] != 0 || p[5] != 0) {
			// P_I_INFORMATION and PROTECTION INTERVAL EXPONENT.
			return Result{}, paramField(4, 7)
		}
	}
	if d.cfg.ThinProvisioning {
		d.writeMu.RLock()
		err := d.be.Unmap(0, int64(d.capacity())*d.bs)
		d.writeMu.RUnlock()
		if err != nil {
			return Result{Kind: KindUnmap}, fmt.Errorf("scsi: format: %w", err)
		}
	}
	return Result{}, nil
}
