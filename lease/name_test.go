// SPDX-License-Identifier: Apache-2.0

package lease

import (
	"errors"
	"testing"
)

// NameHeld sees a ClaimName lock (of this process too: OFD locks belong
// to the open file, not the process) without taking it, and sees it go.
func TestNameHeld(t *testing.T) {
	dir := t.TempDir()
	check := func(want bool) {
		t.Helper()
		if held, err := NameHeld(dir, "d0"); err != nil || held != want {
			t.Fatalf("NameHeld = %v, %v; want %v", held, err, want)
		}
	}
	check(false) // no lock file yet
	h, err := ClaimName(dir, "d0", "/srv/d0.img")
	if err != nil {
		t.Fatal(err)
	}
	check(true)
	check(true) // looking did not take it
	if _, err := ClaimName(dir, "d0", "/srv/other.img"); !errors.Is(err, ErrHeld) {
		t.Fatalf("second ClaimName = %v, want ErrHeld", err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	check(false) // released; the file stays
	h, err = ClaimName(dir, "d0", "/srv/d0.img")
	if err != nil {
		t.Fatalf("ClaimName after NameHeld looked = %v", err)
	}
	h.Close()
}
