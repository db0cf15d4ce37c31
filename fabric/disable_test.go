// SPDX-License-Identifier: Apache-2.0

package fabric

import (
	"slices"
	"testing"
)

// Disable writes enable=0 and nothing else: the LUNs, ACL mappings and
// the portal stay until RemoveLUN or Remove, which then does not write
// enable again. A second Disable does nothing.
func TestISCSIDisableKeepsLUNs(t *testing.T) {
	k := newFakeKernel(t)
	before := k.tree(t)
	it := k.iscsi()
	it.Initiators = []string{testInit}
	if _, err := it.AddLUN(t.Context(), 0, k.backstore(0)); err != nil {
		t.Fatal(err)
	}
	k.takeLog()
	exported := k.tree(t)
	tpg := "config/target/iscsi/" + testIQN + "/tpgt_1"
	if err := it.Disable(); err != nil {
		t.Fatal(err)
	}
	if got, want := k.takeLog(), []string{"write " + tpg + "/enable=0"}; !slices.Equal(got, want) {
		t.Errorf("Disable operations: got %q, want %q", got, want)
	}
	if after := k.tree(t); !slices.Equal(after, exported) {
		t.Errorf("configfs after Disable:\n got %q\nwant %q", after, exported)
	}
	if err := it.Disable(); err != nil {
		t.Fatal(err)
	}
	if got := k.takeLog(); len(got) != 0 {
		t.Errorf("second Disable operations: %q, want none", got)
	}
	if err := it.RemoveLUN(0); err != nil {
		t.Fatal(err)
	}
	if err := it.Remove(); err != nil {
		t.Fatal(err)
	}
	for _, op := range k.takeLog() {
		if op == "write "+tpg+"/enable=0" {
			t.Errorf("Remove after Disable wrote enable=0 again")
		}
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs after Remove:\n got %q\nwant %q", after, before)
	}
}
