// SPDX-License-Identifier: Apache-2.0

package fabric

import (
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
)

// TestRemoveStaleISCSI: a target left by a killed run (its LUNs link our
// backstores) is removed whole, ACLs and CHAP included; one that links
// anything else is refused and left as it is.
func TestRemoveStaleISCSI(t *testing.T) {
	for _, ours := range []bool{true, false} {
		k := newFakeKernel(t)
		before := k.tree(t)
		it := k.iscsi()
		it.Initiators = []string{"iqn.1993-08.org.debian:01:a", "iqn.1993-08.org.debian:01:b"}
		it.CHAPUser, it.CHAPPassword = "user", "secret-secret-1"
		for lun := range 2 {
			if _, err := it.AddLUN(t.Context(), lun, k.backstore(lun)); err != nil {
				t.Fatal(err)
			}
		}
		// The run is killed: nothing removes the target.
		made := k.tree(t)
		owned := func(p string) bool {
			return ours && strings.HasPrefix(p, k.Configfs+"/target/core/")
		}
		err := RemoveStaleISCSI(k, k.Configfs, testIQN, owned)
		if ours {
			if err != nil {
				t.Fatal(err)
			}
			if after := k.tree(t); !slices.Equal(after, before) {
				t.Errorf("configfs after removing the stale target:\n got %q\nwant %q", after, before)
			}
			continue
		}
		if !errors.Is(err, fs.ErrExist) {
			t.Errorf("RemoveStaleISCSI(someone else's) = %v, want fs.ErrExist", err)
		}
		if after := k.tree(t); !slices.Equal(after, made) {
			t.Errorf("someone else's target was changed:\n got %q\nwant %q", after, made)
		}
	}
	// No target: nothing to do.
	k := newFakeKernel(t)
	if err := RemoveStaleISCSI(k, k.Configfs, testIQN, func(string) bool { return false }); err != nil {
		t.Errorf("removeStaleISCSI without a target = %v", err)
	}
}
