// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// Initiator names of libiscsi's iscsi-test-cu (its -i and -I defaults,
// passed explicitly so that the export's ACL and the suite agree).
const (
	suiteInitiator1 = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"
	suiteInitiator2 = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2"
)

// expect is what an allow-listed test of the suite does on lunbridge.
type expect uint8

const (
	// expectFail: the test fails on lunbridge, and it is not lunbridge's
	// doing; a pass means the list is out of date.
	expectFail expect = iota + 1
	// expectEither: the test passes or fails from run to run, on the
	// kernel's own fileio backstore as well.
	expectEither
)

// conformanceAllow lists the tests of "iscsi-test-cu -t ALL" that
// lunbridge is allowed not to pass, each with the reason it is not
// lunbridge's. Any other failure fails TestConformance, and so does a pass
// of an expectFail entry.
var conformanceAllow = map[string]struct {
	want expect
	why  string
}{
	// Residual overflow (iSCSI EXPECTED DATA TRANSFER LENGTH below what
	// the CDB asks for) of a READ: on 6.1 a TCMU device's CDBs go through
	// passthrough_parse_cdb, which makes no target_cmd_size_check, so no
	// overflow is recorded; the handler gets iovecs of the expected
	// length (lunbridge fills them with the right bytes) and can only
	// shorten the transfer (rsp.read_len, target_complete_cmd_with_length
	// handles length < data_length only). The underflow halves of these
	// tests pass. Fileio passes: sbc_parse_cdb does the size check.
	"iSCSIResiduals.Read10Invalid":   {expectFail, "TCMU: no way to report a data-in residual overflow (passthrough_parse_cdb, rsp.read_len)"},
	"iSCSIResiduals.Read10Residuals": {expectFail, "TCMU: no way to report a data-in residual overflow (passthrough_parse_cdb, rsp.read_len)"},
	"iSCSIResiduals.Read12Residuals": {expectFail, "TCMU: no way to report a data-in residual overflow (passthrough_parse_cdb, rsp.read_len)"},
	"iSCSIResiduals.Read16Residuals": {expectFail, "TCMU: no way to report a data-in residual overflow (passthrough_parse_cdb, rsp.read_len)"},
	// Data-out overflow and underflow of writes: the suite wants GOOD with
	// a residual, and TCMU has no field for a data-out residual at all;
	// lunbridge rejects a short data-out (INVALID FIELD IN CDB) rather
	// than claim GOOD for a partial write. LIO fails all but the (12)
	// variant of WRITE AND VERIFY on fileio too (target_cmd_size_check
	// rejects size mismatches of WRITE data CDBs).
	"iSCSIResiduals.Write10Residuals":       {expectFail, "kernel: write residuals (fails on fileio too)"},
	"iSCSIResiduals.Write12Residuals":       {expectFail, "kernel: write residuals (fails on fileio too)"},
	"iSCSIResiduals.Write16Residuals":       {expectFail, "kernel: write residuals (fails on fileio too)"},
	"iSCSIResiduals.WriteVerify10Residuals": {expectFail, "kernel: write residuals (fails on fileio too)"},
	"iSCSIResiduals.WriteVerify12Residuals": {expectFail, "TCMU: no data-out residual; a partial write is refused, not claimed GOOD"},
	"iSCSIResiduals.WriteVerify16Residuals": {expectFail, "kernel: write residuals (fails on fileio too)"},
	// A Data-Out PDU with a wrong DataSN is handled (or not) by the iSCSI
	// fabric before any backstore sees data.
	"iSCSIdatasn.iSCSIDataSnInvalid": {expectFail, "kernel: DataSN checking is iscsi_target_mod's (fails on fileio too)"},
	// RESERVE(6)/RELEASE(6) are emulated by LIO itself (they never reach
	// TCMU); whether the reservation is gone when the test looks after a
	// logout, a lost I_T nexus or a LUN reset depends on the kernel's
	// session teardown and unit attention timing, and varies from run to
	// run on fileio too.
	"Reserve6.Logout":      {expectEither, "kernel: SPC-2 reservations and session teardown timing are LIO's"},
	"Reserve6.ITNexusLoss": {expectEither, "kernel: SPC-2 reservations and session teardown timing are LIO's"},
	"Reserve6.LUNReset":    {expectEither, "kernel: SPC-2 reservations and unit attention timing are LIO's"},
	// The suite ignores MAXIMUM TRANSFER LENGTH (lunbridge advertises its
	// --max-transfer, 1 MiB = 2048 blocks by default): it writes 65536
	// blocks in one WRITE(16) before WRITE SAME(16) with UNMAP. SBC-4
	// (Block Limits VPD page): a longer command shall be terminated with
	// ILLEGAL REQUEST, INVALID FIELD IN CDB, which lunbridge does. (Fileio,
	// with other limits, passes it. ExtendedCopy.Simple writes 2048 blocks
	// and failed the same way while the default was 512 KiB.)
	"WriteSame16.Unmap": {expectFail, "suite: ignores MAXIMUM TRANSFER LENGTH, which SBC-4 says to enforce"},
	// libiscsi 1.19 runs COMPARE AND WRITE for 1 to 256 blocks: 256 does
	// not fit the 8-bit NUMBER OF LOGICAL BLOCKS and goes out as 0, which
	// SBC-4 says is not an error (upstream now stops at 255). With the
	// 2 x 256 blocks of data-out that come with it lunbridge answers
	// INVALID FIELD IN COMMAND INFORMATION UNIT, as LIO does; the suite
	// wants INVALID FIELD IN CDB. Fails on fileio too.
	"CompareAndWrite.Simple":     {expectFail, "suite (1.19): 256 blocks in an 8-bit field (fails on fileio too)"},
	"CompareAndWrite.Miscompare": {expectFail, "suite (1.19): 256 blocks in an 8-bit field (fails on fileio too)"},
	// GET LBA STATUS from LBA i+1 after unmapping [0, i): the suite wants
	// the first descriptor at i+LBPPB, not at the requested LBA. SBC-4
	// (GET LBA STATUS parameter data): the first descriptor starts at the
	// STARTING LOGICAL BLOCK ADDRESS, which lunbridge follows; the two
	// agree only with one logical block per physical block (fileio),
	// and lunbridge reports 4096-byte physical blocks (LBPPB 8).
	"GetLBAStatus.UnmapSingle": {expectFail, "suite: first descriptor at i+LBPPB, SBC-4 says at the requested LBA"},
	// An invalid CSCD index in a segment descriptor is found while the
	// parameter list is checked, before any copying: lunbridge answers
	// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST with a pointer;
	// a copy past the end aborts during processing with COPY ABORTED,
	// LOGICAL BLOCK ADDRESS OUT OF RANGE. The suite accepts only COPY
	// ABORTED with ASC 00h or 0Dh for both. Fails on fileio too.
	"ExtendedCopy.ValidSegDescr": {expectFail, "suite: only COPY ABORTED 00h/0Dh accepted (fails on fileio too)"},
	// "No copy in progress" for LIST IDENTIFIER 1 after earlier tests ran
	// EXTENDED COPY with list ID 1: SPC-5 has the copy manager hold that
	// status (LIST ID USAGE 00b), so COPY STATUS returns it; the suite
	// assumes a fresh LUN. Fails on fileio too (LIO supports list ID 0
	// only).
	"ReceiveCopyResults.CopyStatus": {expectFail, "suite: assumes no held copy status for list ID 1 (fails on fileio too)"},
}

// TestConformance runs libiscsi's conformance suite (iscsi-test-cu -t ALL,
// destructive tests included, with its multipath tests on a second session
// to the same LUN) from the host through the 127.0.0.1 port forward against
// a lunbridge LUN and, in the same boot, an in-kernel fileio LUN of the same
// size. Every lunbridge failure must be on conformanceAllow; both scores
// are logged. Each run is bounded (lbSuiteLimit, fileioSuiteLimit): a hung
// lunbridge run fails the test, a hung fileio run is logged with the
// guest's blocked tasks and its finished results are the reference. The
// guest side is testdata/conformance.sh.
func TestConformance(t *testing.T) {
	vmtest.RequireTools(t, "iscsi-test-cu")
	const (
		lbIQN     = "iqn.2026-11.org.lunbridge.test:conf"
		fileioIQN = "iqn.2026-11.org.lunbridge.test:conf-fileio"
		size      = 64 << 20
	)
	lb := vmtest.BuildLunbridge(t)
	vm := vmtest.Boot(t, vmtest.Options{
		Net:     true,
		NoTrace: true,
		Timeout: 18 * time.Minute,
		Files:   map[string]string{"lunbridge": lb},
		Script: lunbridgeLib + fmt.Sprintf("LB_IQN=%s FILEIO_IQN=%s INIT1=%s INIT2=%s SIZE=%d\n",
			lbIQN, fileioIQN, suiteInitiator1, suiteInitiator2, size) + scenario("conformance"),
	})
	ctx, cancel := context.WithTimeout(t.Context(), 16*time.Minute)
	defer cancel()
	if err := vm.WaitReady(ctx, "exported"); err != nil {
		t.Fatal(err)
	}
	url := func(iqn string) string {
		return fmt.Sprintf("iscsi://127.0.0.1:%d/%s/0", vm.HostPort(), iqn)
	}
	// Each run has a bound: the suite has no timeout of its own and waits
	// forever for a response that never comes. A lunbridge run that hangs
	// fails the test. The fileio run is only the reference score: when the
	// kernel's own backstore hangs (seen once on 6.12 in CI, in the last
	// suites, iSCSITMF or MultipathIO) the test says so, has the guest log
	// its blocked tasks, and compares with what fileio finished.
	lbRes, lbDone := runSuite(ctx, t, vm, "lunbridge", url(lbIQN), lbSuiteLimit)
	if !lbDone {
		t.Fatalf("lunbridge: iscsi-test-cu did not finish in %v", lbSuiteLimit)
	}
	fioRes, fioDone := runSuite(ctx, t, vm, "fileio", url(fileioIQN), fileioSuiteLimit)
	if !fioDone {
		t.Logf("fileio: iscsi-test-cu did not finish in %v (the kernel's own backstore; %d results kept)",
			fileioSuiteLimit, len(fioRes))
	}
	if err := vm.Signal("done"); err != nil {
		t.Fatal(err)
	}
	res, err := vm.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Errorf("guest script exited with status %d", res.ExitCode)
	}

	t.Logf("score: lunbridge %d/%d, fileio %d/%d", lbRes.passed(), len(lbRes), fioRes.passed(), len(fioRes))
	if len(lbRes) < 200 {
		t.Fatalf("lunbridge: %d test results, want the whole suite (230)", len(lbRes))
	}
	for _, name := range slices.Sorted(maps.Keys(lbRes)) {
		r := lbRes[name]
		a, listed := conformanceAllow[name]
		switch {
		case !r.ok && !listed:
			t.Errorf("%s failed on lunbridge (fileio: %s):\n%s", name, fioRes.status(name), r.detail)
		case !r.ok:
			t.Logf("%s failed as allowed (%s; fileio: %s)", name, a.why, fioRes.status(name))
		case listed && a.want == expectFail:
			t.Errorf("%s passed on lunbridge but is allow-listed as failing (%s): update conformanceAllow", name, a.why)
		}
	}
	for name := range conformanceAllow {
		if _, ok := lbRes[name]; !ok {
			t.Errorf("allow-listed test %s did not run", name)
		}
	}
}

// suiteResult is one test of the suite: passed, or the failed assertions.
type suiteResult struct {
	ok     bool
	detail string
}

// suiteResults maps "Suite.Test" to its result.
type suiteResults map[string]*suiteResult

func (s suiteResults) passed() int {
	n := 0
	for _, r := range s {
		if r.ok {
			n++
		}
	}
	return n
}

func (s suiteResults) status(name string) string {
	switch r, ok := s[name]; {
	case !ok:
		return "not run"
	case r.ok:
		return "passed"
	}
	return "failed"
}

// Bounds on one run of the suite, about three times the longest run
// measured (lunbridge 2m58s, fileio 1m22s, 6.1 and 6.12 under TCG).
// Variables, so that a scratch test can shorten one to try the path of a
// run that does not finish.
var (
	lbSuiteLimit     = 8 * time.Minute
	fileioSuiteLimit = 5 * time.Minute
)

// runSuite runs "iscsi-test-cu -t ALL" in XML mode against url (and, for
// the multipath tests, a second session to the same url) for at most limit
// and returns its per-test results and whether it finished. The console
// output goes to the test log. When a run does not finish in time, the
// guest is signalled stuck-LABEL (testdata/conformance.sh then logs its
// blocked tasks) while the suite still waits, and the run is killed 5 s
// later; its results are those its XML file holds, and the last of them is
// logged.
func runSuite(ctx context.Context, t *testing.T, vm *vmtest.VM, label, url string, limit time.Duration) (suiteResults, bool) {
	t.Helper()
	dir := t.TempDir()
	args := []string{"--dataloss", "--xml", "-i", suiteInitiator1, "-I", suiteInitiator2, "-t", "ALL", url, url}
	runCtx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	// Line-buffered (coreutils' stdbuf), so that a killed run's console
	// log goes up to where it stopped; the XML file is cut at a buffer.
	cmd := exec.CommandContext(runCtx, "stdbuf", append([]string{"-oL", "-eL", "iscsi-test-cu"}, args...)...)
	cmd.Dir = dir
	cmd.Cancel = func() error {
		if err := vm.Signal("stuck-" + label); err != nil {
			t.Log(err)
		} else {
			time.Sleep(5 * time.Second)
		}
		return cmd.Process.Kill()
	}
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	done := runCtx.Err() == nil
	t.Logf("host: iscsi-test-cu %s (%s, %v, %s):\n%s", strings.Join(args, " "), label, err,
		time.Since(start).Round(time.Second), out)
	files, _ := filepath.Glob(filepath.Join(dir, "*.xml"))
	var res suiteResults
	for _, f := range files {
		r, last, perr := parseCUnitXML(f)
		if perr != nil && done {
			t.Fatalf("%s: %v", label, perr)
		}
		if !done && (len(r) > 0 || perr != nil) {
			t.Logf("%s: iscsi-test-cu killed after %v; %s holds %d results, the last %s (%v)",
				label, limit, filepath.Base(f), len(r), last, perr)
		}
		if len(r) > len(res) {
			res = r
		}
	}
	if len(res) == 0 && done {
		t.Fatalf("%s: iscsi-test-cu wrote no test results (files %v, exit %v)", label, files, err)
	}
	return res, done
}

// parseCUnitXML reads a CUnit automated-mode results file:
// CUNIT_RUN_SUITE elements hold a SUITE_NAME and CUNIT_RUN_TEST_RECORDs,
// each a CUNIT_RUN_TEST_SUCCESS or a CUNIT_RUN_TEST_FAILURE (one per
// failed assertion) with a TEST_NAME. It also returns the last record's
// test. On a malformed or cut-short file it returns the records complete
// before the error, with the error.
func parseCUnitXML(path string) (res suiteResults, last string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	dec.Strict = false
	res = suiteResults{}
	var suite, test, elem, cond, file, line string
	var fail bool
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			// What was read so far: a killed run leaves the file cut short.
			return res, last, fmt.Errorf("parse %s: %w", path, err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			elem = tok.Name.Local
			switch elem {
			case "CUNIT_RUN_TEST_SUCCESS", "CUNIT_RUN_TEST_FAILURE":
				test, cond, file, line = "", "", "", ""
				fail = elem == "CUNIT_RUN_TEST_FAILURE"
			}
		case xml.CharData:
			s := strings.TrimSpace(string(tok))
			switch elem {
			case "SUITE_NAME":
				suite += s
			case "TEST_NAME":
				test += s
			case "CONDITION":
				cond += s
			case "FILE_NAME":
				file += s
			case "LINE_NUMBER":
				line += s
			}
		case xml.EndElement:
			switch tok.Name.Local {
			case "CUNIT_RUN_SUITE":
				suite = ""
			case "CUNIT_RUN_TEST_SUCCESS", "CUNIT_RUN_TEST_FAILURE":
				name := suite + "." + test
				last = name
				r := res[name]
				if r == nil {
					r = &suiteResult{ok: true}
					res[name] = r
				}
				if fail {
					r.ok = false
					r.detail += fmt.Sprintf("  %s:%s: %s\n", filepath.Base(file), line, cond)
				}
			}
			elem = ""
		}
	}
	return res, last, nil
}

// TestOpenISCSI runs a lunbridge iSCSI LUN through the Linux initiator
// stack: open-iscsi's iscsid and iscsiadm with the guest kernel's
// iscsi_tcp, inside the guest, over its loopback. It checks discovery,
// login, mkfs.ext4, 192 MiB of file writes read back after a remount,
// e2fsck clean, fstrim punching holes in the backing file (its allocated
// blocks drop), e2fsck clean again, and logout. Then the same with XFS
// (96 MiB of files, xfs_repair -n) on a second LUN through tcm_loop. The
// guest side is testdata/conformance_openiscsi.sh.
func TestOpenISCSI(t *testing.T) {
	vmtest.RequireTools(t, "iscsiadm", "iscsid", "mkfs.ext4", "e2fsck", "mkfs.xfs", "xfs_repair")
	const (
		iqn  = "iqn.2026-11.org.lunbridge.test:openiscsi"
		init = "iqn.2026-11.org.lunbridge.test:guest-initiator"
		size = 384 << 20
	)
	lb := vmtest.BuildLunbridge(t)
	res := vmtest.Run(t, vmtest.Options{
		MemoryMB: 1536,
		Timeout:  10 * time.Minute,
		Files:    map[string]string{"lunbridge": lb},
		Script: lunbridgeLib + fmt.Sprintf("IQN=%s INIT=%s SIZE=%d\n", iqn, init, size) +
			scenario("conformance_openiscsi"),
	})
	// The files were deleted and trimmed: the backing file must have
	// lost most of their allocation (stat %b is in 512-byte units).
	for _, c := range []struct {
		file string
		min  int64
	}{{"alloc", 150 << 20}, {"alloc-xfs", 80 << 20}} {
		b, err := os.ReadFile(filepath.Join(res.ShareDir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		var before, after int64
		if _, err := fmt.Sscan(string(b), &before, &after); err != nil {
			t.Fatalf("%s file %q: %v", c.file, b, err)
		}
		if freed := (before - after) * 512; freed < c.min {
			t.Errorf("%s: fstrim freed %d bytes of the backing file (%d -> %d blocks), want at least %d",
				c.file, freed, before, after, c.min)
		}
	}
}

// TestCUnitCutShort: the results file of a killed suite run is cut short;
// parseCUnitXML keeps the records completed before the cut (and says it is
// cut) and the last of them. No guest: this is the host side of a hung
// run.
func TestCUnitCutShort(t *testing.T) {
	const xmlHead = `<?xml version="1.0" ?>
<CUNIT_TEST_RUN_REPORT>
  <CUNIT_RESULT_LISTING>
    <CUNIT_RUN_SUITE>
      <CUNIT_RUN_SUITE_SUCCESS>
        <SUITE_NAME> iSCSIResiduals </SUITE_NAME>
        <CUNIT_RUN_TEST_RECORD>
          <CUNIT_RUN_TEST_SUCCESS>
            <TEST_NAME> Read10Invalid </TEST_NAME>
          </CUNIT_RUN_TEST_SUCCESS>
        </CUNIT_RUN_TEST_RECORD>
        <CUNIT_RUN_TEST_RECORD>
          <CUNIT_RUN_TEST_FAILURE>
            <TEST_NAME> Write10Residuals </TEST_NAME>
            <FILE_NAME> test_iscsi_residuals.c </FILE_NAME>
            <LINE_NUMBER> 213 </LINE_NUMBER>
            <CONDITION> Block was not written correctly </CONDITION>
          </CUNIT_RUN_TEST_FAILURE>
        </CUNIT_RUN_TEST_RECORD>
      </CUNIT_RUN_SUITE_SUCCESS>
    </CUNIT_RUN_SUITE>
    <CUNIT_RUN_SUITE>
      <CUNIT_RUN_SUITE_SUCCESS>
        <SUITE_NAME> iSCSITMF </SUITE_NAME>
        <CUNIT_RUN_TEST_RECORD>
          <CUNIT_RUN_TEST_SUCC`
	path := filepath.Join(t.TempDir(), "CUnitAutomated-Results.xml")
	if err := os.WriteFile(path, []byte(xmlHead), 0o644); err != nil {
		t.Fatal(err)
	}
	res, last, err := parseCUnitXML(path)
	if err == nil {
		t.Error("parseCUnitXML of a cut-short file: no error")
	}
	if last != "iSCSIResiduals.Write10Residuals" {
		t.Errorf("parseCUnitXML of a cut-short file: last record %q, want iSCSIResiduals.Write10Residuals", last)
	}
	if len(res) != 2 || res.status("iSCSIResiduals.Read10Invalid") != "passed" ||
		res.status("iSCSIResiduals.Write10Residuals") != "failed" {
		t.Errorf("parseCUnitXML of a cut-short file = %v, want Read10Invalid passed and Write10Residuals failed", res)
	}
	if d := res["iSCSIResiduals.Write10Residuals"]; d != nil && !strings.Contains(d.detail, "test_iscsi_residuals.c:213: Block was not written correctly") {
		t.Errorf("Write10Residuals detail %q", d.detail)
	}

	// The whole file parses without error.
	whole := xmlHead[:strings.LastIndex(xmlHead, "    <CUNIT_RUN_SUITE>")] + "  </CUNIT_RESULT_LISTING>\n</CUNIT_TEST_RUN_REPORT>\n"
	if err := os.WriteFile(path, []byte(whole), 0o644); err != nil {
		t.Fatal(err)
	}
	if res, _, err := parseCUnitXML(path); err != nil || len(res) != 2 {
		t.Errorf("parseCUnitXML of a whole file = %v, %v; want 2 results", res, err)
	}
}
