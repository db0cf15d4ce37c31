// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/integration/vmtest"
	"github.com/lunbridge/lunbridge/lease"
)

// TestHandoverHungWrite is a planned handover that cannot hang
// (testdata/handover-hang.sh): two gateways export one file through
// tcm_loop, each through its own FUSE client (loopfs -locks); a write to
// the owner is held inside the owner's client, and the owner is stopped
// with SIGTERM. Its drain cannot finish, so the drain deadline must end
// it: the other gateway takes over within the deadline, the validity and
// two polls (plus slack for the emulated guest), the held write never
// completes GOOD, and the writes acknowledged before (by the old owner)
// and after (by the new one) read back and are in the file.
func TestHandoverHungWrite(t *testing.T) {
	vmtest.RequireTools(t, "sg_turs")
	res := vmtest.Run(t, vmtest.Options{
		Timeout: 6 * time.Minute,
		Files: map[string]string{
			"lunbridge": vmtest.BuildLunbridge(t),
			"loopfs":    vmtest.BuildCommand(t, "./internal/cmd/loopfs"),
		},
		Script: guestScript("handover-hang"),
	})
	r := readResults(t, filepath.Join(res.ShareDir, "results"))
	// The daemon's lease settings are the defaults; the drain deadline
	// is the validity (lease.Config.DrainTimeout).
	drain, validity, poll := lease.DefaultValidity, lease.DefaultValidity, lease.DefaultPoll
	bound := drain + validity + 2*poll + 4*time.Second
	ms, err := strconv.Atoi(r["takeover_ms"])
	if err != nil {
		t.Fatalf("takeover_ms %q: %v", r["takeover_ms"], err)
	}
	took := time.Duration(ms) * time.Millisecond
	t.Logf("takeover %v after SIGTERM with a write held (bound %v); held write: pending at takeover %s, then exit %s; old owner exit %s; held write in the file after its release: %s",
		took, bound, r["b_pending_at_takeover"], r["b_rc"], r["gw1_rc"], r["b_in_file"])
	if took > bound {
		t.Errorf("takeover took %v, want at most %v (drain deadline %v + validity %v + 2 polls + 4 s)", took, bound, drain, validity)
	}
	for k, want := range map[string]string{
		"drain_timed_out":       "1", // the write was still held when the deadline came
		"b_pending_at_takeover": "1",
		"read_back_ok":          "1",
		"file_ok":               "1",
	} {
		if r[k] != want {
			t.Errorf("%s = %q, want %q", k, r[k], want)
		}
	}
	if r["b_rc"] == "0" {
		t.Errorf("the held write completed GOOD (dd exit 0) after the takeover")
	}
}

// readResults reads "key value" lines.
func readResults(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(s.Text()), " "); ok {
			r[k] = v
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return r
}
