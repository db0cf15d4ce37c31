// SPDX-License-Identifier: Apache-2.0

package scsi

// reportSupportedOpcodes runs REPORT SUPPORTED OPERATION CODES (SPC-5
// 6.36). It reports the commands this disk runs plus those the kernel
// answers for a TCMU device before they reach userspace (REPORT LUNS
// always; PERSISTENT RESERVE IN/OUT with Config.KernelPR), from the same
// table that ParseCDB validates against. With RCTD, each command gets a
// command timeouts descriptor with no timeouts given (0).
func (d *Disk) reportSupportedOpcodes(c *CDB, data [][]byte) (Result, error) {
	rctd := c.raw[2]&0x80 != 0
	opts := c.raw[2] & 0x07
	reqOp := Opcode(c.raw[3])
	reqSA := be16(c.raw[4:])
	var b []byte
	switch opts {
	case 0:
		b = make([]byte, 4)
		for _, cmd := range ordered {
			if !d.lists(cmd) {
				continue
			}
			var desc [8]byte
			desc[0] = byte(cmd.op)
			if cmd.flags&fSA != 0 {
				put16(desc[2:], uint16(cmd.sa))
				desc[5] |= 0x01 // SERVACTV
			}
			if rctd {
				desc[5] |= 0x02 // CTDP
			}
			put16(desc[6:], uint16(len(cmd.usage)))
			b = append(b, desc[:]...)
			if rctd {
				b = append(b, timeoutsDescriptor()...)
			}
		}
		put32(b, uint32(len(b)-4))
	case 1, 2, 3:
		cands := byOpcode[reqOp]
		hasSA := len(cands) > 0 && cands[0].flags&fSA != 0
		switch {
		case opts == 1 && hasSA:
			// SPC-5: 001b names an opcode without service
			// actions.
			return Result{}, cdbField(3, 7)
		case opts == 2 && len(cands) > 0 && !hasSA:
			return Result{}, cdbField(3, 7)
		}
		var cmd *command
		if hasSA {
			if reqSA <= 0x1f {
				cmd, _ = lookup(reqOp, uint8(reqSA))
			}
		} else if len(cands) > 0 {
			cmd = cands[0]
		}
		b = make([]byte, 4)
		b[1] = 0x01 // SUPPORT 001b: not supported
		if cmd != nil && d.lists(cmd) {
			b[1] = 0x03 // SUPPORT 011b: supported as the standard says
			put16(b[2:], uint16(len(cmd.usage)))
			b = append(b, cmd.usage...)
		}
		if rctd {
			b[1] |= 0x80 // CTDP
			b = append(b, timeoutsDescriptor()...)
		}
	default:
		return Result{}, cdbField(2, 2)
	}
	return reply(data, b, c.Length), nil
}

// lists reports whether REPORT SUPPORTED OPERATION CODES lists cmd.
func (d *Disk) lists(cmd *command) bool {
	return d.supports(cmd) && (cmd.exec != nil || cmd.flags&(fKernel|fKernelPR) != 0)
}

// timeoutsDescriptor is a command timeouts descriptor (SPC-5)
// that gives no timeouts.
func timeoutsDescriptor() []byte {
	return []byte{0x00, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
}
