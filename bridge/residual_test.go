// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"path/filepath"
	"testing"
)

// TestReadResiduals drives READ(10) through the fake kernel with data-in
// buffers of other lengths than the CDB's TRANSFER LENGTH: what an iSCSI
// initiator gets when its EXPECTED DATA TRANSFER LENGTH differs. On Linux
// 6.1 a TCMU device's CDBs go through passthrough_parse_cdb, which makes
// no size check: the handler gets iovecs of the expected length, and the
// kernel sends min(rsp.read_len, that length) bytes when
// TCMU_UFLAG_READ_LEN carries a nonzero read_len, else all of them
// (tcmu_handle_completion); target_complete_cmd_with_length turns a
// shorter read_len into an underflow residual. SAM-5 and RFC 7143: the
// target transfers the data in order up to the shorter of the two lengths
// and reports the difference.
func TestReadResiduals(t *testing.T) {
	l := serveLUN(t, Options{Name: "d", Path: filepath.Join(t.TempDir(), "d.img"), Size: 1 << 20})
	data := bytes.Repeat([]byte("lunbridge residual test block.\n"), 1024)[:4*512]
	l.mustGood(t, write10(0, 4, false), data, 0)

	tests := []struct {
		name   string
		cdb    []byte
		inLen  int
		want   []byte // the bytes the initiator gets
		setLen bool   // rsp.read_len shortens the transfer: underflow
	}{
		{"exact", read10(0, 2), 1024, data[:1024], false},
		{"longer buffer: underflow", read10(0, 1), 10000, data[:512], true},
		{"shorter buffer, part of a block", read10(1, 1), 200, data[512:712], false},
		{"shorter buffer, one of two blocks", read10(0, 2), 512, data[:512], false},
		{"shorter buffer across a block", read10(0, 3), 700, data[:700], false},
		{"no buffer", read10(0, 1), 0, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := l.do(t, tt.cdb, nil, tt.inLen)
			if r.Status != 0 {
				t.Fatalf("status %#x sense %s, want GOOD", r.Status, senseString(r.Sense))
			}
			if r.ReadLenSet != tt.setLen {
				t.Errorf("READ_LEN set = %v, want %v (read_len %d)", r.ReadLenSet, tt.setLen, r.ReadLen)
			}
			if !bytes.Equal(r.Data, tt.want) {
				t.Errorf("data-in = %d bytes (%.16q), want %d bytes (%.16q)", len(r.Data), r.Data, len(tt.want), tt.want)
			}
		})
	}
}

// TestReadNoDataLeak checks that a data-in command that moves no data
// (READ with TRANSFER LENGTH 0, SBC-4: not an error) into a non-empty
// buffer returns zeros: rsp.read_len cannot be 0 (the kernel ignores it
// and sends the whole buffer), and the data area still holds the bytes of
// an earlier command.
func TestReadNoDataLeak(t *testing.T) {
	l := serveLUN(t, Options{Name: "d", Path: filepath.Join(t.TempDir(), "d.img"), Size: 1 << 20})
	secret := bytes.Repeat([]byte{0xa5}, 4096)
	l.mustGood(t, write10(8, 8, false), secret, 0)
	got := l.mustGood(t, read10(0, 0), nil, 4096)
	if len(got) != 4096 || !bytes.Equal(got, make([]byte, 4096)) {
		t.Errorf("READ(10) of 0 blocks into 4096 bytes returned %d bytes starting % x, want zeros", len(got), got[:min(16, len(got))])
	}
}
