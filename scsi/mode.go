// SPDX-License-Identifier: Apache-2.0

package scsi

import "math/bits"

// Mode pages (SPC-5, SBC-4). The disk has no subpages and cannot
// save parameters: MODE SENSE with PC=11b is SAVING PARAMETERS NOT
// SUPPORTED, MODE SELECT with SP=1 is INVALID FIELD IN CDB (SPC-5
// 6.11, 6.13). The changeable fields are WCE (caching page) and D_SENSE
// (control page).
const (
	pageRWErrorRecovery = 0x01
	pageCaching         = 0x08
	pageControl         = 0x0A
	pageInfoExceptions  = 0x1C
	pageAll             = 0x3F

	pcCurrent    = 0
	pcChangeable = 1
	pcDefault    = 2
	pcSaved      = 3
)

// modePageCodes lists the mode pages in the order MODE SENSE returns them.
var modePageCodes = []byte{pageRWErrorRecovery, pageCaching, pageControl, pageInfoExceptions}

// modePage builds mode page code for page control pc (current,
// changeable or default), or reports it unknown.
func (d *Disk) modePage(code, pc byte) ([]byte, bool) {
	var b []byte
	switch code {
	case pageRWErrorRecovery:
		// SBC-4: no error recovery parameter can be set; the
		// backing store does its own.
		b = make([]byte, 12)
	case pageCaching:
		// SBC-4: WCE (byte 2 bit 2) is the write cache mode.
		b = make([]byte, 20)
		switch pc {
		case pcCurrent:
			if d.wce.Load() {
				b[2] = 0x04
			}
		case pcChangeable:
			b[2] = 0x04
		case pcDefault:
			if d.cfg.WriteCache {
				b[2] = 0x04
			}
		}
	case pageControl:
		// SPC-5: D_SENSE (byte 2 bit 2) selects descriptor
		// format sense data; GLTSD=1 (no log parameters are saved);
		// QUEUE ALGORITHM MODIFIER 1h (unrestricted reordering).
		b = make([]byte, 12)
		switch pc {
		case pcCurrent:
			b[2] = 0x02
			if d.dsense.Load() {
				b[2] |= 0x04
			}
			b[3] = 0x10
		case pcChangeable:
			b[2] = 0x04
		case pcDefault:
			b[2] = 0x02
			b[3] = 0x10
		}
	case pageInfoExceptions:
		// SPC-5: DEXCPT=1, informational exceptions are off.
		b = make([]byte, 12)
		if pc != pcChangeable {
			b[2] = 0x08
		}
	default:
		return nil, false
	}
	b[0] = code
	b[1] = byte(len(b) - 2)
	return b, true
}

// modeSense runs MODE SENSE(6) and MODE SENSE(10) (SPC-5).
func (d *Disk) modeSense(c *CDB, data [][]byte) (Result, error) {
	ten := c.Op == OpModeSense10
	dbd := c.raw[1]&0x08 != 0
	llbaa := ten && c.raw[1]&0x10 != 0
	pc, code, sub := c.raw[2]>>6, c.raw[2]&0x3f, c.raw[3]
	if pc == pcSaved {
		return Result{}, ErrSavingParamsUnsupported.WithField(true, 2, 7)
	}
	var pages []byte
	switch {
	case code == pageAll:
		if sub != 0x00 && sub != 0xff {
			return Result{}, cdbField(3, 7)
		}
		for _, p := range modePageCodes {
			b, _ := d.modePage(p, pc)
			pages = append(pages, b...)
		}
	default:
		b, ok := d.modePage(code, pc)
		if !ok {
			return Result{}, cdbField(2, 5)
		}
		// Subpage FFh asks for the page and all its subpages: it has
		// none.
		if sub != 0x00 && sub != 0xff {
			return Result{}, cdbField(3, 7)
		}
		pages = b
	}

	var bd []byte
	if !dbd {
		bd = d.blockDescriptor(llbaa, pc == pcChangeable)
	}
	hlen := 4
	if ten {
		hlen = 8
	}
	b := make([]byte, hlen, hlen+len(bd)+len(pages))
	// SBC-4: WP and DPOFUA in the DEVICE-SPECIFIC PARAMETER.
	devSpecific := byte(0x10)
	if d.readOnly.Load() {
		devSpecific |= 0x80
	}
	b = append(b, bd...)
	b = append(b, pages...)
	if ten {
		put16(b[0:], uint16(len(b)-2))
		b[3] = devSpecific
		if len(bd) == 16 {
			b[4] = 0x01 // LONGLBA
		}
		put16(b[6:], uint16(len(bd)))
	} else {
		b[0] = byte(len(b) - 1)
		b[2] = devSpecific
		b[3] = byte(len(bd))
	}
	return reply(data, b, c.Length), nil
}

// blockDescriptor is the short (8-byte) or long (16-byte) LBA mode
// parameter block descriptor (SBC-4); all zero for the changeable
// values, since neither field can change.
func (d *Disk) blockDescriptor(long, changeable bool) []byte {
	if long {
		b := make([]byte, 16)
		if !changeable {
			put64(b, d.capacity())
			put32(b[12:], d.cfg.BlockSize)
		}
		return b
	}
	b := make([]byte, 8)
	if !changeable {
		put32(b, uint32(min(d.capacity(), 0xffffffff)))
		b[5], b[6], b[7] = byte(d.cfg.BlockSize>>16), byte(d.cfg.BlockSize>>8), byte(d.cfg.BlockSize)
	}
	return b
}

// modeSelect runs MODE SELECT(6) and MODE SELECT(10) (SPC-5).
// Every field of every page must equal its current value unless it is
// changeable, else INVALID FIELD IN PARAMETER LIST points at it; a
// truncated header, descriptor or page is PARAMETER LIST LENGTH ERROR.
// Nothing changes unless the whole list is valid.
func (d *Disk) modeSelect(c *CDB, data [][]byte) (Result, error) {
	ten := c.Op == OpModeSelect10
	if c.raw[1]&0x01 != 0 {
		return Result{}, cdbField(1, 0) // SP: no saved pages
	}
	if c.Length == 0 {
		return Result{}, nil
	}
	p := paramList(data, c.Length)
	if len(p) < int(c.Length) {
		return Result{}, ErrParamListLengthError
	}
	hlen := 4
	if ten {
		hlen = 8
	}
	if len(p) < hlen {
		return Result{}, ErrParamListLengthError
	}
	var medium byte
	var bdlen int
	long := false
	if ten {
		// MODE DATA LENGTH is reserved in MODE SELECT.
		if p[0] != 0 || p[1] != 0 {
			return Result{}, paramField(0, 7)
		}
		medium = p[2]
		if p[4]&^0x01 != 0 {
			return Result{}, paramField(4, bits.Len8(p[4])-1)
		}
		if p[5] != 0 {
			return Result{}, paramField(5, bits.Len8(p[5])-1)
		}
		long = p[4]&0x01 != 0
		bdlen = int(be16(p[6:]))
	} else {
		if p[0] != 0 {
			return Result{}, paramField(0, 7)
		}
		medium = p[1]
		bdlen = int(p[3])
	}
	if medium != 0 {
		return Result{}, paramField(hlen/4, 7)
	}
	// The DEVICE-SPECIFIC PARAMETER (WP, DPOFUA) is ignored by MODE
	// SELECT (SBC-4: DPOFUA reserved; WP reflects the LUN).
	bdField := 3
	if ten {
		bdField = 6
	}
	want := 8
	if long {
		want = 16
	}
	if bdlen != 0 && bdlen != want {
		return Result{}, paramField(bdField, 7)
	}
	if hlen+bdlen > len(p) {
		return Result{}, ErrParamListLengthError
	}
	if bdlen != 0 {
		if err := d.checkBlockDescriptor(p[hlen:hlen+bdlen], hlen); err != nil {
			return Result{}, err
		}
	}

	wce, dsense := d.wce.Load(), d.dsense.Load()
	for off := hlen + bdlen; off < len(p); {
		if len(p)-off < 2 {
			return Result{}, ErrParamListLengthError
		}
		if p[off]&0x40 != 0 {
			return Result{}, paramField(off, 6) // SPF: no subpages
		}
		code := p[off] & 0x3f
		cur, ok := d.modePage(code, pcCurrent)
		if !ok {
			return Result{}, paramField(off, 5)
		}
		if int(p[off+1]) != len(cur)-2 {
			return Result{}, paramField(off+1, 7)
		}
		if off+len(cur) > len(p) {
			return Result{}, ErrParamListLengthError
		}
		chg, _ := d.modePage(code, pcChangeable)
		page := p[off : off+len(cur)]
		for i := 2; i < len(cur); i++ {
			if bad := (page[i] ^ cur[i]) &^ chg[i]; bad != 0 {
				return Result{}, paramField(off+i, bits.Len8(bad)-1)
			}
		}
		switch code {
		case pageCaching:
			wce = page[2]&0x04 != 0
		case pageControl:
			dsense = page[2]&0x04 != 0
		}
		off += len(cur)
	}
	d.wce.Store(wce)
	d.dsense.Store(dsense)
	return Result{}, nil
}

// checkBlockDescriptor validates a mode parameter block descriptor of
// MODE SELECT at offset off of the parameter list: NUMBER OF LOGICAL
// BLOCKS must be 0 (keep) or the current value and LOGICAL BLOCK LENGTH
// the current one (SBC-4): neither can change.
func (d *Disk) checkBlockDescriptor(b []byte, off int) error {
	var n uint64
	var bl uint32
	cur := d.capacity()
	if len(b) == 16 {
		n, bl = be64(b), be32(b[12:])
		if be32(b[8:]) != 0 {
			return paramField(off+8, 7)
		}
	} else {
		n = uint64(be32(b))
		bl = uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7])
		if b[4] != 0 {
			return paramField(off+4, 7)
		}
		cur = min(cur, 0xffffffff)
	}
	if n != 0 && n != cur {
		return paramField(off, 7)
	}
	if bl != d.cfg.BlockSize {
		return paramField(off+len(b)-3, 7)
	}
	return nil
}
