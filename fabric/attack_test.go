// SPDX-License-Identifier: Apache-2.0

package fabric

import (
	"slices"
	"strings"
	"testing"
)

// Names that become configfs directory names (target/iscsi/<iqn>,
// tpgt_1/acls/<initiator>, tpgt_1/np/<portal>) must not leave their
// directory, carry a NUL or a newline, or exceed what LIO takes. Each is
// refused before configfs is touched.
func TestISCSINameAttacks(t *testing.T) {
	escapes := []string{
		"..", "../x", "iqn.2003-01.org.example:../../core",
		"iqn.2003-01.org.example:a/../../b", "/iqn.2003-01.org.example",
		"iqn.2003-01.org.example:a\x00b", "iqn.2003-01.org.example:a\nb",
		"iqn.2003-01.org.example:" + strings.Repeat("a", maxIQNLen),
		"naa.5001405000000001/..", "eui.02004567A425678D/x",
	}
	for _, name := range escapes {
		if ValidateIQN(name) == nil {
			t.Errorf("ValidateIQN(%q) = nil, want an error", name)
		}
	}
	for _, tc := range []struct {
		name string
		mod  func(*ISCSITarget)
	}{
		{"target", func(i *ISCSITarget) { i.IQN = escapes[2] }},
		{"initiator", func(i *ISCSITarget) { i.Initiators = []string{escapes[3]} }},
		{"initiator NUL", func(i *ISCSITarget) { i.Initiators = []string{escapes[5]} }},
		{"portal slash", func(i *ISCSITarget) { i.Portal = "0.0.0.0/../../x:3260" }},
		{"portal dot-dot", func(i *ISCSITarget) { i.Portal = "..:3260" }},
		{"portal name", func(i *ISCSITarget) { i.Portal = "localhost:3260" }},
		{"portal NUL", func(i *ISCSITarget) { i.Portal = "127.0.0.1:32\x0060" }},
		{"CHAP newline", func(i *ISCSITarget) { i.CHAPUser, i.CHAPPassword = "u\n", testSecr }},
		{"CHAP too long", func(i *ISCSITarget) { i.CHAPUser, i.CHAPPassword = "u", strings.Repeat("s", 256) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newFakeKernel(t)
			before := k.tree(t)
			it := k.iscsi()
			tc.mod(it)
			if _, err := it.AddLUN(t.Context(), 0, k.backstore(0)); err == nil {
				t.Fatal("AddLUN succeeded")
			}
			if got := k.takeLog(); len(got) != 0 {
				t.Errorf("configfs touched before the refusal: %q", got)
			}
			if after := k.tree(t); !slices.Equal(after, before) {
				t.Errorf("configfs after a refused AddLUN:\n got %q\nwant %q", after, before)
			}
		})
	}
}
