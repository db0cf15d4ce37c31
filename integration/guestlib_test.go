// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"embed"
	"fmt"
	"sort"
	"strings"
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
