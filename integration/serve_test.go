// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestServeReload runs "lunbridge serve" on a config file with two LUNs,
// reads them with "lunbridge list" and "lunbridge stats --json", then
// rewrites the config (one LUN removed, one added) and sends SIGHUP: the
// removed LUN goes, the new one comes, and the LUN that stayed keeps its
// disk and its data undisturbed. A backstore of the same name that belongs
// to someone else is refused and left untouched. A clean stop leaves
// configfs as it was.
func TestServeReload(t *testing.T) {
	lb := vmtest.BuildLunbridge(t)
	res := vmtest.Run(t, vmtest.Options{
		Files:  map[string]string{"lunbridge": lb},
		Script: guestScript("serve-reload"),
	})
	var stats []struct {
		Name  string            `json:"name"`
		Info  map[string]string `json:"info"`
		Stats map[string]uint64 `json:"stats"`
	}
	b, err := os.ReadFile(filepath.Join(res.ShareDir, "stats.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &stats); err != nil {
		t.Fatalf("lunbridge stats --json: %v\n%s", err, b)
	}
	if len(stats) != 1 || stats[0].Name != "keep" || stats[0].Info["size"] != "16777216" {
		t.Fatalf("lunbridge stats --json keep = %s", b)
	}
	if got := stats[0].Stats["write_bytes"]; got < 16<<20 {
		t.Errorf("stats --json: write_bytes = %d, want at least %d", got, 16<<20)
	}
	list, err := os.ReadFile(filepath.Join(res.ShareDir, "list.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NAME", "keep", "drop", "/tmp/keep.img", "16M", "online"} {
		if !strings.Contains(string(list), want) {
			t.Errorf("lunbridge list: no %q in:\n%s", want, list)
		}
	}
}
