// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// abiConsts is every constant of abi.go by the name offsets.c prints, with
// the field widths our accessors use as "sizeof.<name>".
var abiConsts = map[string]uint64{
	"mbVersion": mbVersion, "mbFlags": mbFlags, "mbCmdrOff": mbCmdrOff, "mbCmdrSize": mbCmdrSize,
	"mbCmdHead": mbCmdHead, "mbCmdTail": mbCmdTail, "mbSize": mbSize,
	"sizeof.mbVersion": 2, "sizeof.mbFlags": 2, "sizeof.mbCmdrOff": 4, "sizeof.mbCmdrSize": 4,
	"sizeof.mbCmdHead": 4, "sizeof.mbCmdTail": 4, // atomic.LoadUint32/StoreUint32
	"mailboxVersion": mailboxVersion,
	"mbFlagCapOOOC":  mbFlagCapOOOC, "mbFlagCapReadLen": mbFlagCapReadLen,
	"mbFlagCapTMR": mbFlagCapTMR, "mbFlagCapKeepBuf": mbFlagCapKeepBuf,
	"hdrLenOp": hdrLenOp, "hdrCmdID": hdrCmdID, "hdrKflags": hdrKflags, "hdrUflags": hdrUflags, "hdrSize": hdrSize,
	"sizeof.hdrLenOp": 4, "sizeof.hdrCmdID": 2, "sizeof.hdrKflags": 1, "sizeof.hdrUflags": 1,
	"opMask": opMask, "opAlign": opAlign, "opPad": opPad, "opCmd": opCmd, "opTMR": opTMR,
	"uflagUnknownOp": uflagUnknownOp, "uflagReadLen": uflagReadLen, "uflagKeepBuf": uflagKeepBuf,
	"reqIovCnt": reqIovCnt, "reqIovBidiCnt": reqIovBidiCnt, "reqIovDifCnt": reqIovDifCnt,
	"reqCdbOff": reqCdbOff, "reqIov": reqIov,
	"sizeof.reqIovCnt": 4, "sizeof.reqIovBidiCnt": 4, "sizeof.reqIovDifCnt": 4, "sizeof.reqCdbOff": 8,
	"iovBase": iovBase, "iovLen": iovLen, "iovSize": iovSize, "sizeof.iovBase": 8, "sizeof.iovLen": 8,
	"entSize":   entSize,
	"rspStatus": rspStatus, "rspReadLen": rspReadLen, "rspSense": rspSense,
	"sizeof.rspStatus": 1, "sizeof.rspReadLen": 4,
	"senseBufLen": senseBufLen, "TCMU_SENSE_BUFFERSIZE": senseBufLen,
	"tmrType": tmrType, "tmrCmdCnt": tmrCmdCnt, "tmrCmdIDs": tmrCmdIDs, "tmrEntSize": tmrEntSize,
	"sizeof.tmrType": 1, "sizeof.tmrCmdCnt": 4, "sizeof.tmrCmdIDs": 2,
	"TMRUnknown": uint64(TMRUnknown), "TMRAbortTask": uint64(TMRAbortTask),
	"TMRAbortTaskSet": uint64(TMRAbortTaskSet), "TMRClearACA": uint64(TMRClearACA),
	"TMRClearTaskSet": uint64(TMRClearTaskSet), "TMRLUNReset": uint64(TMRLUNReset),
	"TMRTargetWarmReset": uint64(TMRTargetWarmReset), "TMRTargetColdReset": uint64(TMRTargetColdReset),
	"TMRLUNResetPRO": uint64(TMRLUNResetPRO),
}

// TestABILayout pins the layout as read from <linux/target_core_user.h>
// (LP64, packed structs, cmd_tail __aligned__(64), the req/rsp union 8-byte
// aligned): a reviewer can check each line against the header.
func TestABILayout(t *testing.T) {
	tests := []struct {
		field     string
		got, want uint64
	}{
		{"tcmu_mailbox.version", mbVersion, 0},
		{"tcmu_mailbox.flags", mbFlags, 2},
		{"tcmu_mailbox.cmdr_off", mbCmdrOff, 4},
		{"tcmu_mailbox.cmdr_size", mbCmdrSize, 8},
		{"tcmu_mailbox.cmd_head", mbCmdHead, 12},
		{"tcmu_mailbox.cmd_tail (aligned 64)", mbCmdTail, 64},
		{"sizeof(tcmu_mailbox)", mbSize, 128},
		{"tcmu_cmd_entry_hdr.len_op", hdrLenOp, 0},
		{"tcmu_cmd_entry_hdr.cmd_id", hdrCmdID, 4},
		{"tcmu_cmd_entry_hdr.kflags", hdrKflags, 6},
		{"tcmu_cmd_entry_hdr.uflags", hdrUflags, 7},
		{"tcmu_cmd_entry.req.iov_cnt", reqIovCnt, 8},
		{"tcmu_cmd_entry.req.iov_bidi_cnt", reqIovBidiCnt, 12},
		{"tcmu_cmd_entry.req.iov_dif_cnt", reqIovDifCnt, 16},
		{"tcmu_cmd_entry.req.cdb_off (union 8-aligned)", reqCdbOff, 24},
		{"tcmu_cmd_entry.req.iov[0]", reqIov, 48},
		{"sizeof(struct iovec)", iovSize, 16},
		{"tcmu_cmd_entry.rsp.scsi_status", rspStatus, 8},
		{"tcmu_cmd_entry.rsp.read_len", rspReadLen, 12},
		{"tcmu_cmd_entry.rsp.sense_buffer", rspSense, 16},
		{"TCMU_SENSE_BUFFERSIZE", senseBufLen, 96},
		{"sizeof(tcmu_cmd_entry)", entSize, 112},
		{"tcmu_tmr_entry.tmr_type", tmrType, 8},
		{"tcmu_tmr_entry.cmd_cnt", tmrCmdCnt, 12},
		{"tcmu_tmr_entry.cmd_ids[0]", tmrCmdIDs, 32},
		{"sizeof(tcmu_tmr_entry)", tmrEntSize, 32},
		{"TCMU_OP_PAD", opPad, 0},
		{"TCMU_OP_CMD", opCmd, 1},
		{"TCMU_OP_TMR", opTMR, 2},
		{"TCMU_OP_MASK", opMask, 7},
		{"TCMU_UFLAG_UNKNOWN_OP", uflagUnknownOp, 1},
		{"TCMU_UFLAG_READ_LEN", uflagReadLen, 2},
		{"TCMU_UFLAG_KEEP_BUF", uflagKeepBuf, 4},
		{"TCMU_MAILBOX_FLAG_CAP_OOOC", uint64(CapOOOC), 1},
		{"TCMU_MAILBOX_FLAG_CAP_READ_LEN", uint64(CapReadLen), 2},
		{"TCMU_MAILBOX_FLAG_CAP_TMR", uint64(CapTMR), 4},
		{"TCMU_MAILBOX_FLAG_CAP_KEEP_BUF", uint64(CapKeepBuf), 8},
		{"TCMU_TMR_LUN_RESET_PRO", uint64(TMRLUNResetPRO), 128},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %d, want %d", tt.field, tt.got, tt.want)
		}
	}
}

// TestAccessorsCoverFields finds, for each accessor, which bytes of an
// entry change its result and checks they are exactly the field's
// [offset, offset+sizeof) from abiConsts: offset and width both.
func TestAccessorsCoverFields(t *testing.T) {
	tests := []struct {
		field string
		get   func(e entry) uint64
	}{
		{"hdrLenOp", func(e entry) uint64 { return uint64(e.lenOp()) }},
		{"hdrCmdID", func(e entry) uint64 { return uint64(e.cmdID()) }},
		{"hdrUflags", func(e entry) uint64 { return uint64(e.uflags()) }},
		{"reqIovCnt", func(e entry) uint64 { return uint64(e.iovCnt()) }},
		{"reqIovBidiCnt", func(e entry) uint64 { return uint64(e.iovBidiCnt()) }},
		{"reqIovDifCnt", func(e entry) uint64 { return uint64(e.iovDifCnt()) }},
		{"reqCdbOff", func(e entry) uint64 { return e.cdbOff() }},
		{"tmrType", func(e entry) uint64 { return uint64(e.tmrType()) }},
		{"tmrCmdCnt", func(e entry) uint64 { return uint64(e.tmrCmdCnt()) }},
		{"tmrCmdIDs", func(e entry) uint64 { return uint64(e.tmrCmdID(0)) }},
		{"iovBase", func(e entry) uint64 { b, _ := e.iov(0); return b }},
		{"iovLen", func(e entry) uint64 { _, n := e.iov(0); return n }},
		{"mbVersion", func(e entry) uint64 { return uint64(mailbox(e).version()) }},
		{"mbFlags", func(e entry) uint64 { return uint64(mailbox(e).flags()) }},
		{"mbCmdrOff", func(e entry) uint64 { return uint64(mailbox(e).cmdrOff()) }},
		{"mbCmdrSize", func(e entry) uint64 { return uint64(mailbox(e).cmdrSize()) }},
	}
	for _, tt := range tests {
		e := make(entry, 256)
		var touched []uint64
		for i := range e {
			clear(e)
			e[i] = 0x5a
			if tt.get(e) != 0 {
				touched = append(touched, uint64(i))
			}
		}
		off := abiConsts[tt.field]
		if strings.HasPrefix(tt.field, "iov") {
			off += reqIov
		}
		var want []uint64
		for i := range abiConsts["sizeof."+tt.field] {
			want = append(want, off+i)
		}
		if !slices.Equal(touched, want) {
			t.Errorf("%s accessor reads bytes %v, want %v", tt.field, touched, want)
		}
	}
	// Writers: each touches exactly its field.
	writers := []struct {
		field string
		set   func(e entry)
		width uint64
	}{
		{"hdrCmdID", func(e entry) { e.setCmdID(0xffff) }, 2},
		{"hdrUflags", func(e entry) { e.setUflags(0xff) }, 1},
		{"rspStatus", func(e entry) { e.setStatus(0xff) }, 1},
		{"rspReadLen", func(e entry) { e.setReadLen(0xffffffff) }, 4},
	}
	for _, w := range writers {
		e := make(entry, 256)
		w.set(e)
		var touched []uint64
		for i, b := range e {
			if b != 0 {
				touched = append(touched, uint64(i))
			}
		}
		var want []uint64
		for i := range w.width {
			want = append(want, abiConsts[w.field]+i)
		}
		if !slices.Equal(touched, want) || abiConsts["sizeof."+w.field] != w.width {
			t.Errorf("%s writer touches bytes %v, want %v", w.field, touched, want)
		}
	}
	if e := make(entry, 256); len(e.sense()) != senseBufLen || &e.sense()[0] != &e[rspSense] {
		t.Errorf("sense() is not rsp.sense_buffer")
	}
}

// TestOffsetsMatchKernelHeader compiles testdata/offsets.c against the
// installed <linux/target_core_user.h> and compares every value it prints
// with abiConsts. Without a C compiler or the header it skips, unless
// TCMU_ABI_STRICT=1 (CI), where it fails.
func TestOffsetsMatchKernelHeader(t *testing.T) {
	strict := os.Getenv("TCMU_ABI_STRICT") == "1"
	unavailable := func(format string, args ...any) {
		t.Helper()
		if strict {
			t.Fatalf(format, args...)
		}
		t.Skipf(format+" (set TCMU_ABI_STRICT=1 to fail instead)", args...)
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		unavailable("no C compiler: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "offsets")
	out, err := exec.Command(cc, "-Wall", "-o", bin, filepath.Join("testdata", "offsets.c")).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("target_core_user.h")) {
			unavailable("kernel header missing: %s", out)
		}
		t.Fatalf("cc offsets.c: %v\n%s", err, out)
	}
	out, err = exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("offsets: %v", err)
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		c, err := strconv.ParseUint(val, 10, 64)
		if !ok || err != nil {
			t.Fatalf("offsets printed %q", sc.Text())
		}
		seen[name] = true
		got, known := abiConsts[name]
		switch {
		case !known:
			t.Errorf("offsets.c prints %s = %d, which abi.go does not define", name, c)
		case got != c:
			t.Errorf("%s = %d in abi.go, %d in <linux/target_core_user.h>", name, got, c)
		}
	}
	for name := range abiConsts {
		if !seen[name] {
			t.Errorf("%s is not checked by offsets.c", name)
		}
	}
}

func TestCapsString(t *testing.T) {
	tests := []struct {
		c    Caps
		want string
	}{
		{0, "0"},
		{CapOOOC | CapReadLen | CapTMR | CapKeepBuf, "OOOC|READ_LEN|TMR|KEEP_BUF"},
		{CapTMR | 0x30, "TMR|0x30"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("Caps(%#x).String() = %q, want %q", uint16(tt.c), got, tt.want)
		}
	}
	if !Caps(0xf).Has(CapOOOC|CapTMR) || Caps(CapOOOC).Has(CapOOOC|CapTMR) {
		t.Error("Caps.Has wrong")
	}
}

func TestTMRTypeString(t *testing.T) {
	tests := []struct {
		t    TMRType
		want string
	}{
		{TMRUnknown, "UNKNOWN"}, {TMRAbortTask, "ABORT_TASK"}, {TMRAbortTaskSet, "ABORT_TASK_SET"},
		{TMRClearACA, "CLEAR_ACA"}, {TMRClearTaskSet, "CLEAR_TASK_SET"}, {TMRLUNReset, "LUN_RESET"},
		{TMRTargetWarmReset, "TARGET_WARM_RESET"}, {TMRTargetColdReset, "TARGET_COLD_RESET"},
		{TMRLUNResetPRO, "LUN_RESET_PRO"}, {42, "TMRType(42)"},
	}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("TMRType(%d).String() = %q, want %q", uint8(tt.t), got, tt.want)
		}
	}
}

func TestCDBLength(t *testing.T) {
	// SPC-4 4.2.5.1 operation code groups, as scsi_command_size.
	tests := []struct {
		cdb  []byte
		want int
	}{
		{[]byte{0x00}, 6}, {[]byte{0x12}, 6}, {[]byte{0x28}, 10}, {[]byte{0x5a}, 10},
		{[]byte{0x60}, 12}, {[]byte{0x7e}, 12}, {[]byte{0x88}, 16}, {[]byte{0x9e}, 16},
		{[]byte{0xa0}, 12}, {[]byte{0xc0}, 10}, {[]byte{0xff}, 10},
		{[]byte{0x7f, 0, 0, 0, 0, 0, 0, 0x18}, 32}, {[]byte{0x7f, 0, 0, 0, 0, 0, 0, 255}, maxCDBLen},
	}
	for _, tt := range tests {
		mem := make([]byte, 4096)
		ne.PutUint16(mem[mbVersion:], 2)
		ne.PutUint32(mem[mbCmdrOff:], 128)
		ne.PutUint32(mem[mbCmdrSize:], 2048)
		d := &codec{mem: mem, cmdrOff: 128, size: 2048}
		copy(mem[200:], tt.cdb)
		got, err := d.cdb(200)
		if err != nil || len(got) != tt.want {
			t.Errorf("CDB %#x: length %d (%v), want %d", tt.cdb[0], len(got), err, tt.want)
		}
	}
}
