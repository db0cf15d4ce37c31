// SPDX-License-Identifier: Apache-2.0

package fabric

import (
	"strings"
	"testing"
)

func TestValidateIQN(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"iqn.2003-01.org.linux-iscsi.host:disk0", true},
		{"iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-inq", true},
		{"iqn.1994-05.com.redhat:5f2e1c2d3b4a", true},
		{"iqn.2003-01.org.example", true},
		{"iqn.2003-01.org.example:a.b-c:d", true},
		{"eui.02004567A425678D", true},
		{"naa.5001405000000001", true},
		{"naa.60014051234567890123456789012345", true},
		{"", false},
		{"iqn.", false},
		{"iqn.03-01.org.example", false},
		{"iqn.2003-1.org.example", false},
		{"iqn.2003-00.org.example", false},
		{"iqn.2003-13.org.example", false},
		{"iqn.2003-01", false},
		{"iqn.2003-01.", false},
		{"iqn.2003-01.org..example", false},
		{"iqn.2003-01.-org.example", false},
		{"iqn.2003-01.Org.example", false},
		{"iqn.2003-01.org.example:", false},
		{"iqn.2003-01.org.example:Disk", false},
		{"iqn.2003-01.org.example:a b", false},
		{"iqn.2003-01.org.example:a_b", false},
		{"iqn.2003-01.org.example:a/b", false},
		{"iqn.2003-01.org.example:" + strings.Repeat("a", 200), false},
		{"eui.02004567A425678", false},
		{"eui.02004567A425678G", false},
		{"naa.500140500000001", false},
		{"wwn.5001405000000001", false},
		{"IQN.2003-01.org.example", false},
	} {
		err := ValidateIQN(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateIQN(%q) = %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}

func TestDefaultIQN(t *testing.T) {
	for _, tc := range []struct {
		host, name string
		want       string // empty: only check validity
	}{
		{"host", "disk0", "iqn.2003-01.org.linux-iscsi.host:lunbridge.disk0"},
		{"build-01.example.com", "a.img", "iqn.2003-01.org.linux-iscsi.build-01.example.com:lunbridge.a.img"},
		{"HOST", "disk0", ""},
		{"", "disk0", "iqn.2003-01.org.linux-iscsi.localhost:lunbridge.disk0"},
		{"-weird_host-", "Disk_0", ""},
		{"___", "___", ""},
		{"h", "", ""},
	} {
		got := DefaultIQN(tc.host, tc.name)
		if err := ValidateIQN(got); err != nil {
			t.Errorf("DefaultIQN(%q, %q) = %q, invalid: %v", tc.host, tc.name, got, err)
		}
		if tc.want != "" && got != tc.want {
			t.Errorf("DefaultIQN(%q, %q) = %q, want %q", tc.host, tc.name, got, tc.want)
		}
		if again := DefaultIQN(tc.host, tc.name); again != got {
			t.Errorf("DefaultIQN(%q, %q) not deterministic: %q, %q", tc.host, tc.name, got, again)
		}
	}
	// Names that sanitize alike stay distinct.
	if a, b := DefaultIQN("h", "Disk_0"), DefaultIQN("h", "disk-0"); a == b {
		t.Errorf("DefaultIQN(Disk_0) = DefaultIQN(disk-0) = %q", a)
	}
}

func TestLoopWWNs(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{"disk0", "disk1", "a", "", "x.img"} {
		target, nexus := LoopWWNs(name)
		for _, w := range []string{target, nexus} {
			if err := ValidateNAA(w); err != nil {
				t.Errorf("LoopWWNs(%q) gave %q: %v", name, w, err)
			}
			if !strings.HasPrefix(w, "naa.5001405") {
				t.Errorf("LoopWWNs(%q) gave %q, want the naa.5001405 prefix", name, w)
			}
			if prev, ok := seen[w]; ok {
				t.Errorf("LoopWWNs(%q) gave %q, also given for %q", name, w, prev)
			}
			seen[w] = name
		}
		if t2, n2 := LoopWWNs(name); t2 != target || n2 != nexus {
			t.Errorf("LoopWWNs(%q) not deterministic", name)
		}
	}
}
