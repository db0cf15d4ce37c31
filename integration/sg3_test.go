// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/integration/blocktest"
	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// sg3Size is the size of the LUN TestSG3 exports, and sg3MaxTransfer the
// --max-transfer it gives, in bytes: half the 1 MiB default, so that the
// limit checks (a READ(16) one block too long) are proven on a value
// other than the default.
const (
	sg3Size        = 64 << 20
	sg3MaxTransfer = 512 << 10
)

// Environment of TestSG3's guest half: the LUN's /dev/sdX, its backing
// file and a copy of its FUSE info file.
const (
	sg3DevEnv  = "LUNBRIDGE_SG3_DEV"
	sg3FileEnv = "LUNBRIDGE_SG3_FILE"
	sg3InfoEnv = "LUNBRIDGE_SG3_INFO"
)

// TestSG3 exports a 64 MiB file with "lunbridge export" through tcm_loop
// and drives the /dev/sdX with sg3-utils from inside the guest: the
// blocktest conformance suite, the exact values lunbridge reports (INQUIRY,
// VPD pages, READ CAPACITY, mode pages, supported operation codes), and
// data commands (UNMAP, WRITE SAME, COMPARE AND WRITE) checked against the
// backing file. Then the blocktest suite again on a LUN of 4096-byte
// blocks. One boot (testdata/sg3.sh): the guest half is this test binary
// run in the guest through hostrun, so sg3-utils and sdparm come from the
// host.
func TestSG3(t *testing.T) {
	if os.Getenv(guestHalfEnv) == t.Name() {
		sg3Guest(t)
		return
	}
	script := guestScript("sg3", "SIZE", fmt.Sprint(sg3Size), "MAX_TRANSFER", fmt.Sprint(sg3MaxTransfer), "TEST", t.Name())
	// testdata/sg3.sh sets these variables by name for the guest half.
	for _, env := range []string{guestHalfEnv, sg3DevEnv, sg3FileEnv, sg3InfoEnv} {
		if !strings.Contains(script, env+"=") {
			t.Fatalf("testdata/sg3.sh does not set %s", env)
		}
	}
	vmtest.RequireTools(t, "sg_inq", "sg_vpd", "sg_readcap", "sg_modes", "sg_opcodes", "sg_unmap",
		"sg_write_same", "sg_compare_and_write", "sg_verify", "sg_get_lba_status", "sg_sync",
		"sg_senddiag", "sg_start", "sg_turs", "sg_requests", "sg_raw", "sdparm", "dd")
	lb := vmtest.BuildLunbridge(t)
	bin := vmtest.BuildTestBinary(t, "./integration")
	res := vmtest.Run(t, vmtest.Options{
		Timeout: 10 * time.Minute,
		Files:   map[string]string{"lunbridge": lb, "integration.test": bin},
		Script:  script,
	})
	checkSdLog(t, filepath.Join(res.ShareDir, "dmesg.txt"))
}

// checkSdLog checks what the kernel's sd driver logged about the disk
// while it was probed and driven: it saw the capacity, the write cache
// and FUA, and complained about nothing.
func checkSdLog(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sd []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, " sd ") {
			sd = append(sd, l)
		}
	}
	t.Logf("sd's log:\n%s", strings.Join(sd, "\n"))
	log := strings.Join(sd, "\n")
	for _, want := range []string{
		fmt.Sprintf("[sda] %d 512-byte logical blocks", sg3Size/512),
		"[sda] 4096-byte physical blocks",
		"[sda] Write cache: enabled, read cache: enabled, supports DPO and FUA",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("sd's log has no %q", want)
		}
	}
	bad := regexp.MustCompile(`(?i)fail|unaligned|error|invalid|not a multiple|mismatch|unsupported|assuming`)
	for _, l := range sd {
		if bad.MatchString(l) {
			t.Errorf("sd complained: %s", l)
		}
	}
}

func sg3Guest(t *testing.T) {
	dev, file := os.Getenv(sg3DevEnv), os.Getenv(sg3FileEnv)
	t.Logf("device %s, backing file %s", dev, file)
	t.Run("blocktest", func(t *testing.T) { blocktest.RunAll(t, dev) })
	t.Run("values", func(t *testing.T) { sg3Values(t, dev, readStatsText(t, os.Getenv(sg3InfoEnv))) })
	t.Run("opcodes", func(t *testing.T) { sg3Opcodes(t, dev) })
	t.Run("sense", func(t *testing.T) { sg3Sense(t, dev) })
	t.Run("backing", func(t *testing.T) { sg3Backing(t, dev, file) })
}

// readStatsText parses a "key value" file into strings.
func readStatsText(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok {
			m[k] = v
		}
	}
	return m
}

// sg3Values checks what sg3-utils print for lunbridge's identity, limits
// and provisioning: exact values, derived from the export's flags
// (64 MiB, 512-byte blocks, 512 KiB max transfer, write-back, thin).
func sg3Values(t *testing.T, dev string, info map[string]string) {
	const (
		blocks   = sg3Size / 512
		maxXfer  = sg3MaxTransfer / 512
		gib      = (1 << 30) / 512
		physExp  = 3 // 4096-byte physical blocks
		caw      = 255
		unmapDsc = 256
	)
	type field struct{ name, re, want string }
	tests := []struct {
		args   []string
		fields []field
	}{
		{[]string{"sg_inq", "--descriptors"}, []field{
			{"vendor", `Vendor identification: (.*)`, "LUNBRIDG"},
			{"product", `Product identification: (.*)`, "lunbridge"},
			{"revision", `Product revision level: (.*)`, "0001"},
			{"version", `(?i)\bversion=(0x[0-9a-f]+\s+\[.*?\])`, "0x06  [SPC-4]"},
			{"PDT", `PDT=(\d+)`, "0"},
			{"RMB", `RMB=(\d)`, "0"},
			{"HiSUP", `HiSUP=(\d)`, "1"},
			{"3PC", `3PC=(\d)`, "1"},
			{"TPGS", `TPGS=(\d)`, "0"},
			{"Protect", `Protect=(\d)`, "0"},
			{"CmdQue", `CmdQue=(\d)`, "1"},
			{"version descriptor 1", `Version descriptors:\s*\n\s*(.*)`, "SAM-5 (no version claimed)"},
			// VERSION 06h (SPC-4) with SAM-5, SPC-4, SBC-3 and SBC-4
			// claimed: scsi/inquiry.go says why.
			{"version descriptor 2", `Version descriptors:\s*\n.*\n\s*(.*)`, "SPC-4 (no version claimed)"},
			{"version descriptor 3", `Version descriptors:\s*\n.*\n.*\n\s*(.*)`, "SBC-3 (no version claimed)"},
			{"version descriptor 4", `Version descriptors:\s*\n.*\n.*\n.*\n\s*(.*)`, "SBC-4 (no version claimed)"},
		}},
		{[]string{"sg_vpd", "--page=sn"}, []field{
			{"serial", `Unit serial number: (\S+)`, info["serial"]},
		}},
		{[]string{"sg_vpd", "--page=di"}, []field{
			{"designator", `designator type: NAA,.*\n\s*0x([0-9a-f]+)`, info["naa"]},
			{"NAA", `designator type: NAA,.*\n\s*0x([0-9a-f])`, "6"},
			{"IEEE company id", `designator type: NAA,.*\n\s*0x[0-9a-f]([0-9a-f]{6})`, "001405"},
			{"T10 vendor id", `vendor id: (\S+)`, "LUNBRIDG"},
			{"T10 vendor specific", `vendor specific: (\S+)`, info["serial"]},
			{"SCSI name string", `SCSI name string:\s*\n\s*(\S+)`, "naa." + strings.ToUpper(info["naa"])},
		}},
		{[]string{"sg_vpd", "--page=ei"}, []field{
			{"HEADSUP", `HEADSUP=(\d)`, "1"},
			{"ORDSUP", `ORDSUP=(\d)`, "1"},
			{"SIMPSUP", `SIMPSUP=(\d)`, "1"},
			{"V_SUP", `\bV_SUP=(\d)`, "1"},
			{"NV_SUP", `NV_SUP=(\d)`, "0"},
		}},
		{[]string{"sg_vpd", "--page=bl"}, []field{
			{"WSNZ", `WSNZ\W+(\d)`, "1"},
			{"max compare and write", `Maximum compare and write length: (\d+)`, fmt.Sprint(caw)},
			{"optimal transfer granularity", `Optimal transfer length granularity: (\d+)`, "8"},
			{"max transfer", `Maximum transfer length: (\d+)`, fmt.Sprint(maxXfer)},
			{"optimal transfer", `Optimal transfer length: (\d+)`, fmt.Sprint(maxXfer)},
			{"max prefetch", `Maximum prefetch transfer length: (\d+)`, fmt.Sprint(maxXfer)},
			{"max unmap LBA count", `Maximum unmap LBA count: (\d+)`, fmt.Sprint(min(gib, 1<<20))}, // bridge caps it at 2^20
			{"max unmap descriptors", `Maximum unmap block descriptor count: (\d+)`, fmt.Sprint(unmapDsc)},
			{"optimal unmap granularity", `Optimal unmap granularity: (\d+)`, "8"},
			{"UGAVALID", `Unmap granularity alignment valid: (\w+)`, "1"},
			{"max write same", `Maximum write same length: (\S+)`, fmt.Sprintf("%#x", gib)},
		}},
		{[]string{"sg_vpd", "--page=bdc"}, []field{
			{"rotation", `(?i)(non-rotating medium)`, "Non-rotating medium"},
			{"FUAB", `FUAB=(\d)`, "1"},
		}},
		{[]string{"sg_vpd", "--page=lbpv"}, []field{
			{"LBPU", `LBPU\W+(\d)`, "1"},
			{"LBPWS", `LBPWS\W+(\d)`, "1"},
			{"LBPWS10", `LBPWS10\W+(\d)`, "1"},
			{"LBPRZ", `LBPRZ\W+(\d)`, "1"},
			{"ANC_SUP", `ANC_SUP\W+(\d)`, "0"},
			{"provisioning type", `Provisioning type: (\d)`, "2"},
		}},
		{[]string{"sg_readcap"}, []field{
			{"last LBA", `Last (?:LBA|logical block address)=(\d+)`, fmt.Sprint(blocks - 1)},
			{"blocks", `Number of logical blocks=(\d+)`, fmt.Sprint(blocks)},
			{"block length", `Logical block length=(\d+)`, "512"},
		}},
		{[]string{"sg_readcap", "-l"}, []field{
			{"last LBA", `Last (?:LBA|logical block address)=(\d+)`, fmt.Sprint(blocks - 1)},
			{"blocks", `Number of logical blocks=(\d+)`, fmt.Sprint(blocks)},
			{"block length", `Logical block length=(\d+)`, "512"},
			{"LBPME", `(?i)lbpme=(\d)`, "1"},
			{"LBPRZ", `(?i)lbprz=(\d)`, "1"},
			{"prot_en", `prot_en=(\d)`, "0"},
			{"physical exponent", `physical block exponent=(\d+)`, fmt.Sprint(physExp)},
			{"lowest aligned", `(?i)lowest aligned LBA=(\d+)`, "0"},
			{"device size", `Device size: (\d+) bytes`, fmt.Sprint(sg3Size)},
		}},
		{[]string{"sg_modes", "--all"}, []field{
			{"caching page", `>> (Caching)`, "Caching"},
			{"control page", `>> (Control)`, "Control"},
			{"WP", `WP=(\d)`, "0"},
			{"DpoFua", `DpoFua=(\d)`, "1"},
			{"block descriptor", `block descriptors:\s*\n.*\n\s*00\s+((?:[0-9a-f]{2} ?)+)`, "00 02 00 00 00 00 02 00"},
		}},
	}
	for _, f := range []struct{ name, want string }{
		{"WCE", "1"}, {"RCD", "0"}, {"D_SENSE", "0"}, {"SWP", "0"}, {"QERR", "0"}, {"TST", "0"},
		{"GLTSD", "1"}, {"QAM", "1"}, {"DEXCPT", "1"},
	} {
		t.Run("sdparm --get="+f.name, func(t *testing.T) {
			if got := blocktest.ModeParam(t, dev, f.name); got != f.want {
				t.Errorf("sdparm --get=%s: %s, want %s", f.name, got, f.want)
			}
		})
	}
	for _, tc := range tests {
		name := strings.Join(tc.args, " ")
		t.Run(name, func(t *testing.T) {
			o := blocktest.Run(t, tc.args[0], append(tc.args[1:], dev)...)
			if o.Code != 0 {
				t.Errorf("%s: exit status %d, want 0", name, o.Code)
			}
			for _, f := range tc.fields {
				got := strings.TrimSpace(blocktest.Field(t, o, f.re))
				if f.name == "UGAVALID" && got == "true" {
					got = "1"
				}
				if !strings.EqualFold(got, f.want) {
					t.Errorf("%s: %s = %q, want %q", name, f.name, got, f.want)
				}
			}
		})
	}
}

// sg3Opcodes checks that REPORT SUPPORTED OPERATION CODES lists every
// command lunbridge implements (and the ones the kernel answers for it),
// by code and by the name sg_opcodes prints.
func sg3Opcodes(t *testing.T, dev string) {
	ops := blocktest.Opcodes(t, dev)
	type op struct {
		code byte
		sa   int // -1: none
		name string
	}
	for _, w := range []op{
		{0x00, -1, "Test Unit Ready"}, {0x03, -1, "Request Sense"}, {0x04, -1, "Format unit"},
		{0x08, -1, "Read(6)"}, {0x0a, -1, "Write(6)"}, {0x12, -1, "Inquiry"},
		{0x15, -1, "Mode select(6)"}, {0x1a, -1, "Mode sense(6)"}, {0x1b, -1, "Start stop unit"},
		{0x1c, -1, "Receive diagnostic results"}, {0x1d, -1, "Send diagnostic"},
		{0x25, -1, "Read capacity(10)"}, {0x28, -1, "Read(10)"}, {0x2a, -1, "Write(10)"},
		{0x2e, -1, "Write and verify(10)"}, {0x2f, -1, "Verify(10)"}, {0x34, -1, "Pre-fetch(10)"},
		{0x35, -1, "Synchronize cache(10)"}, {0x41, -1, "Write same(10)"}, {0x42, -1, "Unmap"},
		{0x55, -1, "Mode select(10)"}, {0x5a, -1, "Mode sense(10)"},
		{0x5e, 0x00, "Persistent reserve in"}, {0x5f, 0x00, "Persistent reserve out"},
		{0x83, 0x00, "Extended copy(LID1)"}, {0x84, 0x00, "Receive copy status(LID1)"},
		{0x88, -1, "Read(16)"}, {0x89, -1, "Compare and write"}, {0x8a, -1, "Write(16)"},
		{0x8e, -1, "Write and verify(16)"}, {0x8f, -1, "Verify(16)"}, {0x90, -1, "Pre-fetch(16)"},
		{0x91, -1, "Synchronize cache(16)"}, {0x93, -1, "Write same(16)"},
		{0x9e, 0x10, "Read capacity(16)"}, {0x9e, 0x12, "Get LBA status"},
		{0xa0, -1, "Report luns"}, {0xa3, 0x0c, "Report supported operation codes"},
		{0xa8, -1, "Read(12)"}, {0xaa, -1, "Write(12)"}, {0xae, -1, "Write and verify(12)"},
		{0xaf, -1, "Verify(12)"},
	} {
		ok := slices.ContainsFunc(ops, func(o blocktest.Opcode) bool {
			return o.Op == w.code && (w.sa < 0 && !o.HasSA || o.HasSA && int(o.SA) == w.sa)
		})
		if !ok {
			t.Errorf("sg_opcodes: %s (%#02x/%d) not listed", w.name, w.code, w.sa)
		}
	}
	o := blocktest.MustRun(t, "sg_opcodes", dev)
	for _, name := range []string{"Read(16)", "Write(16)", "Unmap", "Write same(16)", "Compare and write",
		"Get LBA status", "Verify(16)", "Synchronize cache(16)", "Extended copy"} {
		if !strings.Contains(strings.ToLower(o.Stdout), strings.ToLower(name)) {
			t.Errorf("sg_opcodes: no %q in the list", name)
		}
	}
	// One command asked for alone: COMPARE AND WRITE's CDB usage data
	// (SBC-4: WRPROTECT, DPO, FUA, FUA_NV... of which lunbridge takes DPO,
	// FUA; the LBA; NUMBER OF LOGICAL BLOCKS; GROUP NUMBER, accepted and
	// ignored).
	o = blocktest.MustRun(t, "sg_opcodes", "--opcode=0x89", dev)
	if !strings.Contains(o.Stdout, "Command is supported") {
		t.Errorf("sg_opcodes -o 0x89: not supported")
	}
	if u := blocktest.Field(t, o, `Usage data:\s+((?:[0-9a-f]{2}\s*)+)`); !strings.HasPrefix(u, "89 18 ff ff ff ff ff ff ff ff 00 00 00 ff 3f 00") {
		t.Errorf("sg_opcodes -o 0x89: usage data %q", u)
	}
}

// sg3Sense checks the sense data lunbridge returns for commands it
// rejects, through sg_raw.
func sg3Sense(t *testing.T, dev string) {
	tests := []struct {
		name     string
		cdb      string
		key, asc string
	}{
		{"READ(10) past the end", "28 00 00 02 00 00 00 00 01 00", "Illegal Request", "Logical block address out of range"},
		{"READ(16) too long", "88 00 00 00 00 00 00 00 00 00 00 00 04 01 00 00", "Illegal Request", "Invalid field in cdb"},
		{"WRITE(10) with WRPROTECT", "2a 20 00 00 00 00 00 00 00 00", "Illegal Request", "Invalid field in cdb"},
		{"unknown opcode 0xff", "ff 00 00 00 00 00 00 00 00 00", "Illegal Request", "Invalid command operation code"},
		{"INQUIRY of VPD page 0x99", "12 01 99 00 ff 00", "Illegal Request", "Invalid field in cdb"},
		{"MODE SENSE(6) of saved values", "1a 00 c8 00 ff 00", "Illegal Request", "Saving parameters not supported"},
		{"WRITE SAME(16) of 0 blocks", "93 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00", "Illegal Request", "Invalid field in cdb"},
		{"UNMAP with ANCHOR", "42 01 00 00 00 00 00 00 18 00", "Illegal Request", "Invalid field in cdb"},
	}
	// The largest transfer the Block Limits page allows goes through.
	blocktest.MustRun(t, "sg_raw", "--outfile=/dev/null", "-r", fmt.Sprint(sg3MaxTransfer), dev, "88", "00", "00", "00", "00", "00", "00", "00", "00", "00",
		"00", "00", "04", "00", "00", "00")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := blocktest.Run(t, "sg_raw", append([]string{"-r", "1024", dev}, strings.Fields(tc.cdb)...)...)
			blocktest.WantSense(t, o, tc.key, tc.asc)
			if !strings.Contains(o.Text(), "Fixed format") {
				t.Errorf("%s: not fixed format sense data (D_SENSE=0)", o.Cmd)
			}
		})
	}
	// D_SENSE=1 (set with MODE SELECT through sdparm) switches to
	// descriptor format sense data (72h).
	t.Run("D_SENSE=1", func(t *testing.T) {
		o := blocktest.Run(t, "sdparm", "--set=D_SENSE=1", dev)
		t.Cleanup(func() { blocktest.Run(t, "sdparm", "--clear=D_SENSE", dev) })
		if o.Code != 0 {
			t.Fatalf("%s: exit status %d", o.Cmd, o.Code)
		}
		if got := blocktest.ModeParam(t, dev, "D_SENSE"); got != "1" {
			t.Errorf("after sdparm --set=D_SENSE=1: D_SENSE %s", got)
		}
		o = blocktest.Run(t, "sg_raw", "-r", "512", dev, "28", "00", "00", "02", "00", "00", "00", "00", "01", "00")
		blocktest.WantSense(t, o, "Illegal Request", "Logical block address out of range")
		if !strings.Contains(o.Text(), "Descriptor format") {
			t.Errorf("%s: not descriptor format sense data with D_SENSE=1", o.Cmd)
		}
		o = blocktest.MustRun(t, "sg_requests", "--desc", dev)
		if !strings.Contains(o.Text(), "Descriptor format") {
			t.Errorf("%s: not descriptor format sense data", o.Cmd)
		}
		if o := blocktest.Run(t, "sdparm", "--clear=D_SENSE", dev); o.Code != 0 {
			t.Errorf("%s: exit status %d", o.Cmd, o.Code)
		}
		if got := blocktest.ModeParam(t, dev, "D_SENSE"); got != "0" {
			t.Errorf("after sdparm --clear=D_SENSE: D_SENSE %s", got)
		}
	})
}

// sg3Backing runs data commands through the device and checks the backing
// file: written data, holes punched by UNMAP and WRITE SAME with UNMAP,
// GET LBA STATUS following the holes, COMPARE AND WRITE.
func sg3Backing(t *testing.T, dev, file string) {
	const bs = 512
	const mib = (1 << 20) / bs
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fileAt := func(lba, n uint64) []byte {
		b := make([]byte, n*bs)
		if _, err := f.ReadAt(b, int64(lba*bs)); err != nil {
			t.Fatal(err)
		}
		return b
	}
	// hole reports whether [lba, lba+n) is a hole in the file.
	hole := func(lba, n uint64) bool {
		off, err := unix.Seek(int(f.Fd()), int64(lba*bs), unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return true
		}
		if err != nil {
			t.Fatal(err)
		}
		return off >= int64((lba+n)*bs)
	}

	zero := blocktest.TempFile(t, make([]byte, bs))
	t.Run("write", func(t *testing.T) {
		lba := uint64(8 * mib)
		p := blocktest.Pattern(40, bs, 2*mib)
		blocktest.WriteBlocks(t, dev, bs, lba, p)
		if !bytes.Equal(fileAt(lba, 2*mib), p) {
			t.Errorf("backing file at %d MiB: not the 2 MiB written through %s", 8, dev)
		}
		if hole(lba, 1) {
			t.Errorf("backing file at 8 MiB: a hole after a write")
		}
	})
	for i, tc := range []struct {
		name string
		args []string
	}{
		{"sg_unmap", []string{"sg_unmap", "--force", "--lba=%d", "--num=%d"}},
		{"sg_write_same --unmap", []string{"sg_write_same", "--16", "--unmap", "--in=" + zero, "--lba=%d", "--num=%d"}},
		{"sg_write_same --unmap --ndob", []string{"sg_write_same", "--16", "--unmap", "--ndob", "--lba=%d", "--num=%d"}},
		{"sg_write_same --10 --unmap", []string{"sg_write_same", "--10", "--unmap", "--in=" + zero, "--lba=%d", "--num=%d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lba := uint64(12+2*i) * mib // 1 MiB aligned: whole pages of tmpfs
			p := blocktest.Pattern(byte(50+i), bs, 2*mib)
			blocktest.WriteBlocks(t, dev, bs, lba, p)
			if s := blocktest.StatusAt(blocktest.GetLBAStatus(t, dev, lba+mib/2), lba+mib/2); s != 0 {
				t.Errorf("GET LBA STATUS of written LBA %d: %d, want 0 (mapped)", lba+mib/2, s)
			}
			args := slices.Clone(tc.args)
			for j, a := range args {
				switch a {
				case "--lba=%d":
					args[j] = fmt.Sprintf(a, lba+mib/2)
				case "--num=%d":
					args[j] = fmt.Sprintf(a, mib)
				}
			}
			blocktest.MustRun(t, args[0], append(args[1:], dev)...)
			want := slices.Concat(p[:mib/2*bs], make([]byte, mib*bs), p[3*mib/2*bs:])
			if !bytes.Equal(fileAt(lba, 2*mib), want) {
				t.Errorf("%s: backing file is not the pattern with 1 MiB of zeros in the middle", tc.name)
			}
			if !bytes.Equal(blocktest.ReadBlocks(t, dev, bs, lba, 2*mib), want) {
				t.Errorf("%s: device does not read the pattern with 1 MiB of zeros in the middle", tc.name)
			}
			if !hole(lba+mib/2, mib) {
				t.Errorf("%s: backing file [%d, +1 MiB) is not a hole", tc.name, (lba+mib/2)*bs)
			}
			ds := blocktest.GetLBAStatus(t, dev, lba+mib/2)
			if s := blocktest.StatusAt(ds, lba+mib/2); s != 1 {
				t.Errorf("GET LBA STATUS after %s: LBA %d status %d, want 1 (deallocated): %v", tc.name, lba+mib/2, s, ds)
			}
			if s := blocktest.StatusAt(ds, lba+3*mib/2-1); s != 1 {
				t.Errorf("GET LBA STATUS after %s: LBA %d status %d, want 1 (deallocated): %v", tc.name, lba+3*mib/2-1, s, ds)
			}
			if s := blocktest.StatusAt(blocktest.GetLBAStatus(t, dev, lba+3*mib/2), lba+3*mib/2); s != 0 {
				t.Errorf("GET LBA STATUS after %s: LBA %d (after the range) status %d, want 0 (mapped)", tc.name, lba+3*mib/2, s)
			}
		})
	}
	t.Run("sg_write_same data", func(t *testing.T) {
		lba := uint64(24 * mib)
		blk := blocktest.Pattern(60, bs, 1)
		blocktest.MustRun(t, "sg_write_same", "--16", "--in="+blocktest.TempFile(t, blk), fmt.Sprintf("--lba=%d", lba), fmt.Sprintf("--num=%d", 2*mib), dev)
		if !bytes.Equal(fileAt(lba, 2*mib), bytes.Repeat(blk, 2*mib)) {
			t.Errorf("backing file: not the block repeated over 1 MiB")
		}
		// Zeros without UNMAP: written (or zero-ranged), not deallocated.
		blocktest.MustRun(t, "sg_write_same", "--16", "--in="+blocktest.TempFile(t, make([]byte, bs)), fmt.Sprintf("--lba=%d", lba), fmt.Sprintf("--num=%d", mib), dev)
		if !bytes.Equal(fileAt(lba, 2*mib), slices.Concat(make([]byte, mib*bs), bytes.Repeat(blk, mib))) {
			t.Errorf("backing file: not zeros then the block after WRITE SAME of zeros")
		}
		if s := blocktest.StatusAt(blocktest.GetLBAStatus(t, dev, lba), lba); s != 0 {
			t.Errorf("GET LBA STATUS after WRITE SAME of zeros without UNMAP: %d, want 0 (mapped)", s)
		}
	})
	t.Run("sg_compare_and_write", func(t *testing.T) {
		lba := uint64(28 * mib)
		a, b, c := blocktest.Pattern(70, bs, 8), blocktest.Pattern(71, bs, 8), blocktest.Pattern(72, bs, 8)
		blocktest.WriteBlocks(t, dev, bs, lba, a)
		blocktest.MustRun(t, "sg_compare_and_write", "--in="+blocktest.TempFile(t, slices.Concat(a, b)), fmt.Sprintf("--lba=%d", lba), "--num=8", dev)
		if !bytes.Equal(fileAt(lba, 8), b) {
			t.Errorf("backing file after COMPARE AND WRITE: not the write data")
		}
		o := blocktest.Run(t, "sg_compare_and_write", "--in="+blocktest.TempFile(t, slices.Concat(a, c)), fmt.Sprintf("--lba=%d", lba), "--num=8", dev)
		if o.Code != 14 {
			t.Errorf("%s: exit %d, want 14 (miscompare)", o.Cmd, o.Code)
		}
		if !bytes.Equal(fileAt(lba, 8), b) {
			t.Errorf("backing file after a miscompare: changed")
		}
	})
	t.Run("sg_unmap two descriptors", func(t *testing.T) {
		lba := uint64(32 * mib)
		p := blocktest.Pattern(80, bs, 4*mib)
		blocktest.WriteBlocks(t, dev, bs, lba, p)
		blocktest.MustRun(t, "sg_unmap", "--force", fmt.Sprintf("--lba=%d,%d", lba, lba+2*mib), fmt.Sprintf("--num=%d,%d", mib, mib), dev)
		want := slices.Concat(make([]byte, mib*bs), p[mib*bs:2*mib*bs], make([]byte, mib*bs), p[3*mib*bs:])
		if !bytes.Equal(fileAt(lba, 4*mib), want) {
			t.Errorf("backing file: not zeros and pattern alternating by the MiB")
		}
		if !hole(lba, mib) || !hole(lba+2*mib, mib) || hole(lba+mib, 1) || hole(lba+3*mib, 1) {
			t.Errorf("backing file: holes not exactly where UNMAP's two descriptors point")
		}
	})
	t.Run("sg_sync", func(t *testing.T) {
		blocktest.MustRun(t, "sg_sync", dev)
	})
}
