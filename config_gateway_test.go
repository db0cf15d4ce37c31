// SPDX-License-Identifier: Apache-2.0

package main

import (
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/lunbridge/lunbridge/lio"
)

// TestGatewayConfig: the alua_* keys of a LUN resolve to its gateway
// settings, and bad ones are refused with the key in the error.
func TestGatewayConfig(t *testing.T) {
	lun := func(keys string) string {
		return "[[target]]\n[[target.lun]]\nname=\"a\"\npath=\"/srv/a.img\"\n" + keys
	}
	for _, tc := range []struct {
		name, text string
		want       *gatewayConfig
		identity   string
		wantErr    string
	}{
		{"none", lun(""), nil, "", ""},
		{"group only", lun("alua_group=2\n"), &gatewayConfig{Self: lio.Member{Group: 2, RelativePort: 2}}, "", ""},
		{"full", lun("alua_group=1\nalua_port=11\nalua_peers=[\"2\", \"3:13\"]\nalua_identity=\"shared\"\n"),
			&gatewayConfig{Self: lio.Member{Group: 1, RelativePort: 11},
				Peers: []lio.Member{{Group: 2, RelativePort: 2}, {Group: 3, RelativePort: 13}}}, "shared", ""},
		{"port without group", lun("alua_port=3\n"), nil, "", "need alua_group"},
		{"peers without group", lun("alua_peers=[\"2\"]\n"), nil, "", "need alua_group"},
		{"identity without group", lun("alua_identity=\"x\"\n"), nil, "", "need alua_group"},
		{"group too big", lun("alua_group=65536\n"), nil, "", "alua_group 65536"},
		{"negative group", lun("alua_group=-1\n"), nil, "", "alua_group -1"},
		{"port too big", lun("alua_group=1\nalua_port=70000\n"), nil, "", "alua_port 70000"},
		{"bad peer", lun("alua_group=1\nalua_peers=[\"x\"]\n"), nil, "", "alua_peers \"x\""},
		{"peer port 0", lun("alua_group=1\nalua_peers=[\"2:0\"]\n"), nil, "", "alua_peers \"2:0\""},
		{"peer is self", lun("alua_group=1\nalua_peers=[\"1\"]\n"), nil, "", "unique"},
		{"peer port clash", lun("alua_group=1\nalua_port=5\nalua_peers=[\"2:5\"]\n"), nil, "", "unique"},
		{"bad identity", lun("alua_group=1\nalua_identity=\"a/b\"\n"), nil, "", "alua_identity"},
		{"identity of another LUN", lun("alua_group=1\nalua_identity=\"b\"\n") + "[[target.lun]]\nname=\"b\"\npath=\"/srv/b.img\"\n", nil, "", "one disk identity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc, err := parseConfig([]byte(tc.text), "host1", readSecretFile)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseConfig = %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := dc.LUNs[0].Group; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Group = %+v, want %+v", got, tc.want)
			}
			if got := dc.LUNs[0].Identity; got != tc.identity {
				t.Errorf("Identity = %q, want %q", got, tc.identity)
			}
			if dc.Gateways != nil {
				t.Errorf("parseConfig opened leases %v; only serve's start may", dc.Gateways)
			}
		})
	}
}

// TestExportGatewayIsConfig: export's --alua-* flags and the config's
// alua_* keys give leases with the same ALUA view (local port, member
// groups) and the same disk identity.
func TestExportGatewayIsConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "db.img")
	args := []string{"lunbridge", "export", "--mount", "", "--alua-group", "2", "--alua-port", "12",
		"--alua-peer", "1", "--alua-peer", "3:13", "--alua-identity", "shared", file}
	var flagLUNs []lunConfig
	var flagGateways *lio.Gateways
	cmd := exportCommand()
	cmd.Action = func(c *cli.Context) error {
		fc, err := exportConfig(c, c.Args().Slice(), c.StringSlice("name"))
		if err != nil {
			return err
		}
		dc, err := fc.resolve("host1", readSecretFile)
		if err != nil {
			return err
		}
		flagLUNs = dc.LUNs
		flagGateways, err = openGateways(c, flagLUNs)
		return err
	}
	app := &cli.App{Commands: []*cli.Command{cmd}, Writer: io.Discard, ErrWriter: io.Discard}
	if err := app.Run(args); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { flagGateways.Close() })

	text := `mount = ""
[[target]]
  [[target.lun]]
  name = "db"
  path = "` + file + `"
  block_size = 512 # export's --block-size default
  alua_group = 2
  alua_port = 12
  alua_peers = ["1", "3:13"]
  alua_identity = "shared"
`
	dc, err := parseConfig([]byte(text), "host1", readSecretFile)
	if err != nil {
		t.Fatal(err)
	}
	cfgGateways, err := openConfigGateways(dc.LUNs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cfgGateways.Close() })

	f, c := flagLUNs[0].Gateway, dc.LUNs[0].Gateway
	if f == nil || c == nil {
		t.Fatalf("Gateway: flags %v, config %v, want both set", f, c)
	}
	if f.Local() != c.Local() {
		t.Errorf("Local: flags %+v, config %+v", f.Local(), c.Local())
	}
	if !reflect.DeepEqual(f.PortGroups(), c.PortGroups()) {
		t.Errorf("PortGroups: flags %+v, config %+v", f.PortGroups(), c.PortGroups())
	}
	fl, cl := flagLUNs[0], dc.LUNs[0]
	if fl.Identity != "shared" || cl.Identity != fl.Identity {
		t.Errorf("Identity: flags %q, config %q, want %q", fl.Identity, cl.Identity, "shared")
	}
	if fl.Gateway == nil || cl.Gateway == nil {
		t.Errorf("Gateway: flags %v, config %v, want both set", fl.Gateway, cl.Gateway)
	}
	if got := cl.Gateway.Info().Group; got != 2 {
		t.Errorf("config LUN's Gateway.Info().Group = %d, want 2", got)
	}
	// Both sides resolve the rest of the LUN the same way.
	fl.Options.Gateway, cl.Options.Gateway = nil, nil
	fl.Group, cl.Group = nil, nil
	if !reflect.DeepEqual(fl, cl) {
		t.Errorf("LUN: flags %+v, config %+v", fl, cl)
	}
}
