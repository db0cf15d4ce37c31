// SPDX-License-Identifier: Apache-2.0

package lease

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// Sidecar layout (docs/scale-out.md). Both records are 64 bytes, little
// endian, and end in a CRC-32C of their first 60 bytes, so that a torn
// write reads as no record rather than as a wrong one.
const (
	ownerOff   = 0   // owner record; written by the lock holder only
	requestOff = 512 // request record; written by any non-owner
	recordLen  = 64
	sidecarLen = 1024

	recMagic   = 0  // 8 bytes
	recEpoch   = 8  // owner: epoch; request: sequence number
	recGroup   = 16 // target port group id
	recFlags   = 18 // owner: flagHeld
	recNonce   = 24 // 16 bytes, random per daemon start
	recCRC     = 60
	flagHeld   = 0x01
	lockOffset = 0 // the byte of the sidecar that the OFD lock covers
)

var (
	ownerMagic   = [8]byte{'L', 'B', 'L', 'E', 'A', 'S', 'E', '1'}
	requestMagic = [8]byte{'L', 'B', 'R', 'E', 'Q', 'S', 'T', '1'}
	castagnoli   = crc32.MakeTable(crc32.Castagnoli)
	le           = binary.LittleEndian
)

// errNoRecord means the record is absent (never written: zeros) or torn.
var errNoRecord = errors.New("lease: no valid record")

// record is an owner or request record.
type record struct {
	// seq is the epoch of an owner record, the sequence number of a
	// request record.
	seq   uint64
	group uint16
	held  bool
	nonce [16]byte
}

func (r record) encode(magic [8]byte) []byte {
	b := make([]byte, recordLen)
	copy(b[recMagic:], magic[:])
	le.PutUint64(b[recEpoch:], r.seq)
	le.PutUint16(b[recGroup:], r.group)
	if r.held {
		b[recFlags] = flagHeld
	}
	copy(b[recNonce:], r.nonce[:])
	le.PutUint32(b[recCRC:], crc32.Checksum(b[:recCRC], castagnoli))
	return b
}

func decode(b []byte, magic [8]byte) (record, error) {
	if len(b) < recordLen || [8]byte(b[recMagic:recMagic+8]) != magic ||
		le.Uint32(b[recCRC:]) != crc32.Checksum(b[:recCRC], castagnoli) {
		return record{}, errNoRecord
	}
	r := record{seq: le.Uint64(b[recEpoch:]), group: le.Uint16(b[recGroup:]), held: b[recFlags]&flagHeld != 0}
	copy(r.nonce[:], b[recNonce:])
	return r, nil
}
