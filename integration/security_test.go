// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestSecurity checks, in one guest, who may log in to lunbridge's iSCSI
// targets, with real initiators (libiscsi's iscsi-inq on the host, through
// the 127.0.0.1 port forward), and that every daemon works within the
// capability bounding set of examples/lunbridge.service:
//
//   - a secret file others can read is refused at start, saying why;
//   - an export with no --initiator admits nobody (generate_node_acls=0,
//     no ACL), and the log says how to allow one;
//   - --initiator admits that initiator and no other;
//   - --insecure-allow-any-initiator admits a stranger, with a warning;
//   - one-way CHAP: the right secret gets in, a wrong or missing one not;
//   - mutual CHAP: in only when both sides prove themselves; an initiator
//     that demands mutual CHAP from a one-way target is refused;
//   - a loop LUN with the FUSE view, I/O, a control write and a resize
//     also work with the reduced bounding set.
//
// The guest half is testdata/security.sh.
func TestSecurity(t *testing.T) {
	vmtest.RequireTools(t, "iscsi-inq", "capsh")
	const (
		iqn      = "iqn.2026-11.org.lunbridge.test"
		allowed  = "iqn.2026-11.org.lunbridge.test:host-allowed"
		stranger = "iqn.2026-11.org.example:stranger"
		user     = "lbuser"
		secret   = "initiator-s3cret-1"
		tuser    = "lbtarget"
		tsecret  = "target-s3cret-22"
		// Linux 6.1's CAP_LAST_CAP (CAP_CHECKPOINT_RESTORE).
		lastCap = 40
	)
	keep := unitCapabilities(t)
	drop, bnd := capDrop(t, keep, lastCap)
	t.Logf("unit bounding set %v: drop %s, CapBnd %s", keep, drop, bnd)
	vars := fmt.Sprintf("IQN=%s\nALLOWED=%s\nCUSER=%s\nSECRET=%s\nTUSER=%s\nTSECRET=%s\nDROP=%s\nBND=%s\nLASTCAP=%d\n",
		iqn, allowed, user, secret, tuser, tsecret, drop, bnd, lastCap)
	vm := vmtest.Boot(t, vmtest.Options{
		Net:    true,
		Files:  map[string]string{"lunbridge": vmtest.BuildLunbridge(t)},
		Script: lunbridgeLib + vars + scenario("security"),
	})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	// login runs iscsi-inq as initiator against target NAME with CHAP
	// credentials cred ("user%secret" or ""), and the target's mutual
	// credentials in libiscsi's environment variables when tcred is set.
	login := func(name, initiator, cred, tcred string) (bool, string) {
		if cred != "" {
			cred += "@"
		}
		url := fmt.Sprintf("iscsi://%s127.0.0.1:%d/%s:%s/0", cred, vm.HostPort(), iqn, name)
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		defer ccancel()
		cmd := exec.CommandContext(cctx, "iscsi-inq", "-i", initiator, url)
		cmd.Env = os.Environ()
		if tu, tp, ok := strings.Cut(tcred, "%"); ok {
			cmd.Env = append(cmd.Env, "LIBISCSI_CHAP_TARGET_USERNAME="+tu, "LIBISCSI_CHAP_TARGET_PASSWORD="+tp)
		}
		out, err := cmd.CombinedOutput()
		shown := strings.NewReplacer(secret, "<secret>", tsecret, "<tsecret>").Replace(string(out))
		return err == nil && strings.Contains(strings.ToLower(shown), "lunbridge"), fmt.Sprintf("err %v\n%s", err, shown)
	}
	good, tgood := user+"%"+secret, tuser+"%"+tsecret
	phases := []struct {
		name  string
		tries []loginTry
	}{
		{"deny", []loginTry{
			{"the initiator later allowed", allowed, "", "", false},
			{"a stranger", stranger, "", "", false},
		}},
		{"listed", []loginTry{
			{"the listed initiator", allowed, "", "", true},
			{"a stranger", stranger, "", "", false},
		}},
		{"any", []loginTry{
			{"a stranger", stranger, "", "", true},
		}},
		{"chap", []loginTry{
			{"right secret", allowed, good, "", true},
			{"wrong secret", allowed, user + "%wrong-s3cret-99", "", false},
			{"wrong user", allowed, "someone%" + secret, "", false},
			{"no secret", allowed, "", "", false},
			{"right secret, stranger", stranger, good, "", false},
			{"initiator demands mutual CHAP the target lacks", allowed, good, tgood, false},
		}},
		{"mutual", []loginTry{
			{"both secrets right", allowed, good, tgood, true},
			{"wrong target secret", allowed, good, tuser + "%wrong-target-s3cret", false},
			{"wrong target user", allowed, good, "impostor%" + tsecret, false},
			{"wrong initiator secret", allowed, user + "%wrong-s3cret-99", tgood, false},
			{"no initiator secret", allowed, "", tgood, false},
		}},
	}
	for _, p := range phases {
		if err := vm.WaitReady(ctx, p.name); err != nil {
			t.Fatal(err)
		}
		for _, try := range p.tries {
			in, out := login(p.name, try.initiator, try.cred, try.tcred)
			t.Logf("%s: %s: logged in %v: %s", p.name, try.what, in, out)
			if in != try.in {
				t.Errorf("target %s, %s: logged in %v, want %v", p.name, try.what, in, try.in)
			}
		}
		if err := vm.Signal(p.name + "-done"); err != nil {
			t.Fatal(err)
		}
	}
	waitScript(t, vm)
}

// loginTry is one login attempt of TestSecurity: what it is, as which
// initiator, with which CHAP credentials ("user%secret"), and whether it
// must get in.
type loginTry struct {
	what, initiator, cred, tcred string
	in                           bool
}

// unitCapabilities reads the CapabilityBoundingSet= of
// examples/lunbridge.service.
func unitCapabilities(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "examples", "lunbridge.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var caps []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapabilityBoundingSet="); ok {
			caps = append(caps, strings.Fields(strings.ToLower(v))...)
		}
	}
	if len(caps) == 0 {
		t.Fatal("examples/lunbridge.service has no CapabilityBoundingSet=")
	}
	return caps
}

// capDrop maps capability names to numbers with the host's capsh and
// returns the numbers 0..last not in keep (capsh --drop's list) and the
// bounding set that leaves, as /proc/PID/status prints CapBnd.
func capDrop(t *testing.T, keep []string, last int) (drop, bnd string) {
	t.Helper()
	want := map[string]bool{}
	for _, c := range keep {
		want[c] = true
	}
	var dropped []string
	var mask uint64
	for i := 0; i <= last; i++ {
		out, err := exec.Command("capsh", "--decode="+strconv.FormatUint(1<<i, 16)).Output()
		if err != nil {
			t.Fatalf("capsh --decode: %v", err)
		}
		_, name, _ := strings.Cut(strings.TrimSpace(string(out)), "=")
		if want[name] {
			mask |= 1 << i
			delete(want, name)
		} else {
			dropped = append(dropped, strconv.Itoa(i))
		}
	}
	if len(want) > 0 {
		t.Fatalf("capabilities in the unit that capsh does not know: %v", want)
	}
	return strings.Join(dropped, ","), fmt.Sprintf("%016x", mask)
}
