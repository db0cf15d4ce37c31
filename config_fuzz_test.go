// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/fusefs"
	"github.com/lunbridge/lunbridge/lio"
)

// FuzzConfig: any config text is refused or resolves to a configuration
// that keeps the rules resolve promises: valid unique names, resolved and
// consistent iSCSI targets, sane limits. Secret files are not read: every
// chap_password_file holds the same 16-byte secret.
func FuzzConfig(f *testing.F) {
	if b, err := os.ReadFile("examples/lunbridge.toml"); err == nil {
		f.Add(string(b))
	}
	for _, s := range []string{
		"[[target]]\n[[target.lun]]\nname=\"a\"\npath=\"/a\"\n",
		"mount=\"\"\ncmd_timeout=\"10s\"\nmax_transfer=\"1M\"\n[[target]]\nfabric=\"iscsi\"\ninitiators=[\"iqn.2026-11.org.example:i\"]\nchap_user=\"u\"\nchap_password_file=\"/s\"\n[[target.lun]]\nname=\"a\"\npath=\"/a\"\nsize=\"1G\"\nblock_size=4096\n",
		"[[target]]\nfabric=\"iscsi\"\ninsecure_allow_any_initiator=true\n[[target.lun]]\nname=\"a\"\npath=\"/a\"\n",
	} {
		f.Add(s)
	}
	secret := func(string) (string, error) { return "0123456789abcdef", nil }
	f.Fuzz(func(t *testing.T, text string) {
		dc, err := parseConfig([]byte(text), "host1", secret)
		if err != nil {
			return
		}
		if dc.CmdTimeout < time.Second || dc.MaxTransfer < 4096 || dc.MaxTransfer%4096 != 0 || dc.Workers < 0 {
			t.Fatalf("limits accepted: %+v", dc)
		}
		names := map[string]bool{}
		targets := map[string]bridge.ExportSpec{}
		for _, l := range dc.LUNs {
			if bridge.ValidName(l.Name) != nil || fusefs.ReservedName(l.Name) || names[l.Name] || l.Path == "" {
				t.Fatalf("LUN accepted: %+v", l)
			}
			names[l.Name] = true
			if bs := l.BlockSize; bs != 0 && bs != 512 && bs != 4096 || l.Size < 0 {
				t.Fatalf("LUN %s: block size %d, size %d accepted", l.Name, bs, l.Size)
			}
			again, err := lio.Resolve(l.Spec, "host1", l.Name)
			if err != nil || !reflect.DeepEqual(again, l.Spec) {
				t.Fatalf("LUN %s: spec %+v is not resolved: %+v, %v", l.Name, l.Spec, again, err)
			}
			if prev, ok := targets[l.Spec.IQN]; ok && l.Spec.Fabric == lio.FabricISCSI {
				if err := lio.SameTarget(prev, l.Spec); err != nil {
					t.Fatalf("LUN %s: %v", l.Name, err)
				}
			}
			targets[l.Spec.IQN] = l.Spec
		}
	})
}
