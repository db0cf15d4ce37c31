// SPDX-License-Identifier: Apache-2.0

package blocktest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Output is what a command printed and how it exited.
type Output struct {
	// Cmd is the command line, for messages.
	Cmd string
	// Stdout and Stderr are the command's outputs.
	Stdout, Stderr string
	// Code is the exit status (sg3-utils: 0 good, 2 not ready, 5 illegal
	// request, 14 miscompare, ...).
	Code int
}

// Text is stdout and stderr together: sg3-utils print sense data on stderr.
func (o Output) Text() string { return o.Stdout + o.Stderr }

// Run runs a command and logs its command line, exit status and output. A
// command that cannot be started fails the test; a non-zero exit status is
// returned for the caller to judge.
func Run(t *testing.T, name string, args ...string) Output {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	o := Output{Cmd: strings.Join(append([]string{name}, args...), " ")}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		o.Code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", o.Cmd, err)
	}
	o.Stdout, o.Stderr = stdout.String(), stderr.String()
	t.Logf("$ %s (exit %d)\n%s", o.Cmd, o.Code, indent(o.Text()))
	return o
}

// MustRun is Run for a command that has to succeed.
func MustRun(t *testing.T, name string, args ...string) Output {
	t.Helper()
	o := Run(t, name, args...)
	if o.Code != 0 {
		t.Fatalf("%s: exit status %d, want 0:\n%s", o.Cmd, o.Code, o.Text())
	}
	return o
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "\t(no output)"
	}
	return "\t" + strings.ReplaceAll(s, "\n", "\n\t")
}

// Field returns the first submatch of re in o's output, or "" when re does
// not match (then the test is marked failed).
func Field(t *testing.T, o Output, re string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(o.Text())
	if m == nil {
		t.Errorf("%s: no match for %q in its output", o.Cmd, re)
		return ""
	}
	return m[1]
}

// Uint parses a decimal or 0x-prefixed hexadecimal field of o (see Field).
func Uint(t *testing.T, o Output, re string) uint64 {
	t.Helper()
	s := Field(t, o, re)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		t.Errorf("%s: %q matched %q, not a number", o.Cmd, re, s)
	}
	return n
}

// Sense is the decoded sense data sg3-utils printed for a CHECK CONDITION.
type Sense struct {
	Key        string // e.g. "Illegal Request"
	Additional string // ASC/ASCQ text, e.g. "Invalid field in cdb"
}

func (s Sense) String() string { return s.Key + ": " + s.Additional }

// SenseOf extracts the sense key and additional sense text from o, as
// sg3_utils' sense decoder prints them (fixed and descriptor formats).
func SenseOf(o Output) Sense {
	var s Sense
	if m := regexp.MustCompile(`Sense key: ([A-Za-z ]+?)\s*\n`).FindStringSubmatch(o.Text()); m != nil {
		s.Key = m[1]
	}
	if m := regexp.MustCompile(`Additional sense: (.+?)\s*\n`).FindStringSubmatch(o.Text()); m != nil {
		s.Additional = m[1]
	}
	return s
}

// WantSense checks that o ended in a CHECK CONDITION with sense key key and
// additional sense text add (both compared without regard to case).
func WantSense(t *testing.T, o Output, key, add string) {
	t.Helper()
	got := SenseOf(o)
	// sg3-utils' own command wrappers report LBA OUT OF RANGE with exit
	// status 22 (SG_LIB_LBA_OUT_OF_RANGE) and no decoded sense.
	if o.Code == 22 && got == (Sense{}) && strings.EqualFold(add, "Logical block address out of range") {
		return
	}
	if !strings.EqualFold(got.Key, key) || !strings.EqualFold(got.Additional, add) {
		t.Errorf("%s: sense %q, want %q (exit %d)", o.Cmd, got, Sense{key, add}, o.Code)
	}
}

// Geometry is what READ CAPACITY(16) reports.
type Geometry struct {
	Blocks       uint64 // number of logical blocks
	BlockSize    int    // logical block length in bytes
	LBPME, LBPRZ bool   // logical block provisioning bits
}

// ReadCapacity runs "sg_readcap -l" on dev and parses it.
func ReadCapacity(t *testing.T, dev string) Geometry {
	t.Helper()
	o := MustRun(t, "sg_readcap", "-l", dev)
	NoComplaints(t, o)
	return Geometry{
		Blocks:    Uint(t, o, `Number of logical blocks=(\d+)`),
		BlockSize: int(Uint(t, o, `Logical block length=(\d+) bytes`)),
		LBPME:     Field(t, o, `(?i)lbpme=(\d)`) == "1",
		LBPRZ:     Field(t, o, `(?i)lbprz=(\d)`) == "1",
	}
}

// WriteBlocks writes data at lba of dev with O_DIRECT (GNU dd), so that
// later reads and SCSI commands see the medium, not the page cache.
func WriteBlocks(t *testing.T, dev string, bs int, lba uint64, data []byte) {
	t.Helper()
	f := TempFile(t, data)
	MustRun(t, "dd", "if="+f, "of="+dev, ddBS(len(data)), fmt.Sprintf("seek=%d", lba*uint64(bs)),
		"oflag=direct,seek_bytes", "conv=notrunc", "status=none")
}

// ddBS is a dd block size that divides n (a multiple of 512), at most 256
// KiB: big enough to keep the number of commands low under emulation.
func ddBS(n int) string {
	b := 256 << 10
	for n%b != 0 {
		b /= 2
	}
	return fmt.Sprintf("bs=%d", b)
}

// ReadBlocks reads n blocks at lba of dev with O_DIRECT.
func ReadBlocks(t *testing.T, dev string, bs int, lba, n uint64) []byte {
	t.Helper()
	size := n * uint64(bs)
	cmd := exec.Command("dd", "if="+dev, ddBS(int(size)), fmt.Sprintf("skip=%d", lba*uint64(bs)),
		fmt.Sprintf("count=%d", size), "iflag=direct,skip_bytes,count_bytes", "status=none")
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	if uint64(len(b)) != size {
		t.Fatalf("%s: read %d bytes, want %d", cmd, len(b), size)
	}
	return b
}

// TempFile writes data to a new file and returns its path.
func TempFile(t *testing.T, data []byte) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "blk")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// Pattern returns n bytes that differ from block to block and from seed to
// seed: every 8-byte word holds seed, the block's index and the word's.
func Pattern(seed byte, bs int, blocks int) []byte {
	b := make([]byte, bs*blocks)
	for i := 0; i+8 <= len(b); i += 8 {
		b[i] = seed
		b[i+1] = byte(i / bs)
		b[i+2] = byte(i / bs >> 8)
		b[i+3] = byte(i % bs / 8)
		b[i+4] = byte(i % bs / 8 >> 8)
		b[i+5] = 0xA5
		b[i+6] = ^seed
		b[i+7] = 0x5A
	}
	return b
}

// SysBlock reads attribute attr (e.g. "queue/max_sectors_kb") of dev's
// /sys/block directory.
func SysBlock(t *testing.T, dev, attr string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), attr))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// ScsiDisk returns dev's /sys/class/scsi_disk/H:C:T:L directory.
func ScsiDisk(t *testing.T, dev string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join("/sys/block", filepath.Base(dev), "device/scsi_disk/*"))
	if err != nil || len(m) != 1 {
		t.Fatalf("scsi_disk of %s: %v %v", dev, m, err)
	}
	return m[0]
}

// LBAStatus is one descriptor of GET LBA STATUS.
type LBAStatus struct {
	LBA, Blocks uint64
	Status      int // PROVISIONING STATUS: 0 mapped, 1 deallocated, 2 anchored
}

// GetLBAStatus runs "sg_get_lba_status --brief" at lba and returns the
// descriptors.
func GetLBAStatus(t *testing.T, dev string, lba uint64) []LBAStatus {
	t.Helper()
	o := MustRun(t, "sg_get_lba_status", "--brief", fmt.Sprintf("--lba=%d", lba), "--maxlen=4096", dev)
	var out []LBAStatus
	for _, line := range strings.Split(o.Stdout, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		var s LBAStatus
		var err1, err2, err3 error
		s.LBA, err1 = strconv.ParseUint(f[0], 0, 64)
		s.Blocks, err2 = strconv.ParseUint(f[1], 0, 64)
		s.Status, err3 = strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no descriptors in:\n%s", o.Cmd, o.Stdout)
	}
	return out
}

// StatusAt returns the provisioning status of lba from descriptors, -1 if
// no descriptor covers it.
func StatusAt(ds []LBAStatus, lba uint64) int {
	for _, d := range ds {
		if lba >= d.LBA && lba < d.LBA+d.Blocks {
			return d.Status
		}
	}
	return -1
}

// ModeParam reads a mode page field (an sdparm acronym such as WCE or
// D_SENSE) with "sdparm --get". sdparm also asks for the saved values,
// which a disk without savable parameters refuses with SAVING PARAMETERS
// NOT SUPPORTED as SPC-5 requires; sdparm then still prints the current
// value but exits with status 5. That one refusal is accepted (checked
// with -vv); any other failure is an error.
func ModeParam(t *testing.T, dev, acronym string) string {
	t.Helper()
	o := Run(t, "sdparm", "--get="+acronym, dev)
	if o.Code == 5 {
		v := Run(t, "sdparm", "-vv", "--get="+acronym, dev)
		if n := strings.Count(v.Text(), "Sense key:"); n != 1 || SenseOf(v) != (Sense{"Illegal Request", "Saving parameters not supported"}) {
			t.Errorf("%s: exit status 5, and not only for saved values:\n%s", o.Cmd, v.Text())
		}
	} else if o.Code != 0 {
		t.Errorf("%s: exit status %d", o.Cmd, o.Code)
	}
	return Field(t, o, acronym+`\s+(\d+)`)
}

// complaints are phrases sg3-utils print when a reply breaks the standard
// (a length field that disagrees with the data, a short page).
var complaints = regexp.MustCompile(`(?i)only fetched|truncat|warning|malformed|too short|unexpected|bad (?:length|page)`)

// NoComplaints fails the test if o has one of sg3-utils' complaints about
// the disk's reply.
func NoComplaints(t *testing.T, o Output) {
	t.Helper()
	if m := complaints.FindString(o.Text()); m != "" {
		t.Errorf("%s: sg3-utils complain (%q) about the reply", o.Cmd, m)
	}
}
