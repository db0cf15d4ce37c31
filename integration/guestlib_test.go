// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// lunbridgeLib is guest shell shared by the tests that run the lunbridge
// command in the guest (prepend it to Options.Script):
// testdata/lib.sh.
//
//go:embed testdata/lib.sh
var lunbridgeLib string

// scenarios are the guest scripts of the tests: testdata/*.sh. Every
// test loads its guest script from here (guestScript, or scenario when
// it composes the script itself), never with os.ReadFile: embedding
// makes a missing or renamed script a build error instead of a failure
// minutes into a boot, and keeps one way to find a test's guest half.
//
//go:embed testdata/*.sh
var scenarios embed.FS

// scenario returns the guest script testdata/NAME.sh as it is.
func scenario(name string) string {
	b, err := scenarios.ReadFile("testdata/" + name + ".sh")
	if err != nil {
		// The pattern above embeds every testdata/*.sh, so this is
		// a misspelt name in a test: a broken invariant.
		panic(fmt.Sprintf("guest scenario %s: %v", name, err))
	}
	return string(b)
}

// guestScript returns the guest script testdata/NAME.sh after
// lunbridgeLib, with vars ("KEY", "value", ...) set as shell variables
// before it.
func guestScript(name string, vars ...string) string {
	b := scenario(name)
	if len(vars)%2 != 0 {
		panic("guestScript: vars come in KEY, value pairs")
	}
	var set []string
	for i := 0; i < len(vars); i += 2 {
		if strings.ContainsRune(vars[i+1], '\'') {
			panic("guestScript: a value with a single quote")
		}
		set = append(set, vars[i]+"='"+vars[i+1]+"'")
	}
	sort.Strings(set)
	return lunbridgeLib + strings.Join(set, "\n") + "\n" + b
}

// guestChecks reports each of names, the checks of a guest scenario that
// runs them with lib.sh's check, as a subtest: it fails when the guest
// recorded the check as failed in share/checks, or did not run it. The
// end of the check's log is logged when it failed, or always with
// alwaysLog.
func guestChecks(t *testing.T, share string, names []string, alwaysLog bool) {
	t.Helper()
	got := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(share, "checks")); err == nil {
		for line := range strings.Lines(string(b)) {
			if name, result, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
				got[name] = result
			}
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			log, _ := os.ReadFile(filepath.Join(share, "check-"+name+".log"))
			if alwaysLog || got[name] != "ok" {
				t.Logf("guest log:\n%s", tail(string(log), 80))
			}
			switch got[name] {
			case "ok":
			case "":
				t.Fatal("the guest did not run this check")
			default:
				t.Error("guest check failed")
			}
		})
	}
}
