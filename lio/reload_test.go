// SPDX-License-Identifier: Apache-2.0

package lio

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/lunbridge/lunbridge/bridge"
)

// fakeLUNs is a LUNSet that records what it serves and fails the adds
// it is told to.
type fakeLUNs struct {
	served  map[string]LUNConfig
	failAdd map[string]bool // LUNs whose add fails, unless of path /old
	log     []string
}

func (f *fakeLUNs) Add(_ context.Context, l LUNConfig) error {
	if f.failAdd[l.Name] && l.Path != "/old" { // restoring the old form works
		f.log = append(f.log, "add "+l.Name+" failed")
		return fmt.Errorf("add %s: %w", l.Name, bridge.ErrInvalid)
	}
	if _, ok := f.served[l.Name]; ok {
		return fmt.Errorf("add %s: %w", l.Name, bridge.ErrExists)
	}
	f.served[l.Name] = l
	f.log = append(f.log, "add "+l.Name+" "+l.Path)
	return nil
}

func (f *fakeLUNs) Remove(_ context.Context, name string) error {
	if _, ok := f.served[name]; !ok {
		return fmt.Errorf("remove %s: %w", name, bridge.ErrNotFound)
	}
	delete(f.served, name)
	f.log = append(f.log, "remove "+name)
	return nil
}

func loopLUN(name, path string) LUNConfig {
	return LUNConfig{Options: bridge.Options{Name: name, Path: path}, Spec: bridge.ExportSpec{Fabric: FabricLoop}}
}

func iscsiLUN(name, path, iqn string, initiators ...string) LUNConfig {
	return LUNConfig{Options: bridge.Options{Name: name, Path: path}, Spec: bridge.ExportSpec{
		Fabric: FabricISCSI, IQN: iqn, Portal: "0.0.0.0:3260", Initiators: initiators}}
}

func names(luns []LUNConfig) []string {
	var out []string
	for _, l := range luns {
		out = append(out, l.Name+"="+l.Path)
	}
	slices.Sort(out)
	return out
}

func TestApplyReload(t *testing.T) {
	const old, iqn = "iqn.2026-11.org.example:old", "iqn.2026-11.org.example:t"
	for _, tc := range []struct {
		name      string
		cur, next []LUNConfig
		failAdd   []string
		want      []string // served afterwards
		wantLog   []string
		wantErr   bool
	}{
		{
			name:    "unchanged",
			cur:     []LUNConfig{loopLUN("a", "/a")},
			next:    []LUNConfig{loopLUN("a", "/a")},
			want:    []string{"a=/a"},
			wantLog: nil,
		},
		{
			name:    "add remove change",
			cur:     []LUNConfig{loopLUN("a", "/a"), loopLUN("b", "/b")},
			next:    []LUNConfig{loopLUN("b", "/b2"), loopLUN("c", "/c")},
			want:    []string{"b=/b2", "c=/c"},
			wantLog: []string{"remove a", "remove b", "add b /b2", "add c /c"},
		},
		{
			name:    "a failed change keeps the old LUN",
			cur:     []LUNConfig{loopLUN("a", "/old")},
			next:    []LUNConfig{loopLUN("a", "/new")},
			failAdd: []string{"a"},
			want:    []string{"a=/old"},
			wantLog: []string{"remove a", "add a failed", "add a /old"},
			wantErr: true,
		},
		{
			name:    "a failed add changes nothing else",
			cur:     []LUNConfig{loopLUN("a", "/a")},
			next:    []LUNConfig{loopLUN("a", "/a"), loopLUN("b", "/b"), loopLUN("c", "/c")},
			failAdd: []string{"b"},
			want:    []string{"a=/a", "c=/c"},
			wantLog: []string{"add b failed", "add c /c"},
			wantErr: true,
		},
		{
			name: "new target settings move every LUN of the target together",
			cur:  []LUNConfig{iscsiLUN("a", "/a", iqn), iscsiLUN("b", "/b", iqn)},
			next: []LUNConfig{iscsiLUN("a", "/a", iqn, "iqn.2026-11.org.example:i"),
				iscsiLUN("b", "/b", iqn, "iqn.2026-11.org.example:i")},
			want:    []string{"a=/a", "b=/b"},
			wantLog: []string{"remove a", "remove b", "add a /a", "add b /b"},
		},
		{
			name: "a failed target change restores the whole target",
			cur:  []LUNConfig{iscsiLUN("a", "/old", old), iscsiLUN("b", "/old", old)},
			next: []LUNConfig{iscsiLUN("a", "/a", old, "iqn.2026-11.org.example:i"),
				iscsiLUN("b", "/b", old, "iqn.2026-11.org.example:i")},
			failAdd: []string{"b"},
			want:    []string{"a=/old", "b=/old"},
			wantLog: []string{"remove a", "remove b", "add a /a", "add b failed", "remove a", "add a /old", "add b /old"},
			wantErr: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeLUNs{served: map[string]LUNConfig{}, failAdd: map[string]bool{}}
			for _, l := range tc.cur {
				f.served[l.Name] = l
			}
			for _, n := range tc.failAdd {
				f.failAdd[n] = true
			}
			got, err := ApplyReload(t.Context(), f, tc.cur, tc.next)
			if (err != nil) != tc.wantErr {
				t.Errorf("ApplyReload error = %v, want error %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, bridge.ErrInvalid) {
				t.Errorf("ApplyReload error = %v, want the add's cause", err)
			}
			if g := names(got); !slices.Equal(g, tc.want) {
				t.Errorf("ApplyReload returned %q, want %q", g, tc.want)
			}
			var served []LUNConfig
			for _, l := range f.served {
				served = append(served, l)
			}
			if g := names(served); !slices.Equal(g, tc.want) {
				t.Errorf("served after reload = %q, want %q", g, tc.want)
			}
			if !slices.Equal(f.log, tc.wantLog) {
				t.Errorf("operations = %q, want %q", f.log, tc.wantLog)
			}
		})
	}
}

// TestSameLUN: every field of Options and ExportSpec that a config can
// set makes a LUN differ; Progress (a function) does not.
func TestSameLUN(t *testing.T) {
	base := iscsiLUN("a", "/a", "iqn.2026-11.org.example:t", "iqn.2026-11.org.example:i")
	same := base
	same.Progress = func(int64, int64) {}
	if !base.Same(same) {
		t.Error("a LUN differs from itself with a Progress callback")
	}
	for name, change := range map[string]func(*LUNConfig){
		"path":          func(l *LUNConfig) { l.Path = "/b" },
		"size":          func(l *LUNConfig) { l.Size = 1 << 20 },
		"block size":    func(l *LUNConfig) { l.BlockSize = 4096 },
		"read-only":     func(l *LUNConfig) { l.ReadOnly = true },
		"write-through": func(l *LUNConfig) { l.WriteThrough = true },
		"workers":       func(l *LUNConfig) { l.Workers = 3 },
		"preallocate":   func(l *LUNConfig) { l.Preallocate = true },
		"direct-io":     func(l *LUNConfig) { l.DirectIO = true },
		"max transfer":  func(l *LUNConfig) { l.MaxTransfer = 1 << 20 },
		"fabric":        func(l *LUNConfig) { l.Spec = bridge.ExportSpec{Fabric: FabricLoop} },
		"iqn":           func(l *LUNConfig) { l.Spec.IQN += "x" },
		"portal":        func(l *LUNConfig) { l.Spec.Portal = "127.0.0.1:3260" },
		"initiators":    func(l *LUNConfig) { l.Spec.Initiators = nil },
		"allow any":     func(l *LUNConfig) { l.Spec.AllowAnyInitiator = true },
		"chap user":     func(l *LUNConfig) { l.Spec.CHAPUser = "u" },
		"chap password": func(l *LUNConfig) { l.Spec.CHAPPassword = "0123456789ab" },
	} {
		l := base
		l.Spec.Initiators = slices.Clone(base.Spec.Initiators)
		change(&l)
		if base.Same(l) {
			t.Errorf("a LUN with another %s is the same", name)
		}
	}
}

// TestGatewayReload: a reload (SIGHUP) may change other LUNs, but a gateway LUN can
// be neither added, removed nor changed; nothing of such a reload is
// applied.
func TestGatewayReload(t *testing.T) {
	gw := func(group uint16, path string) LUNConfig {
		l := loopLUN("g", path)
		l.Group = &GatewaySettings{Self: Member{Group: group, RelativePort: group},
			Peers: []Member{{Group: 9, RelativePort: 9}}}
		return l
	}
	started := []LUNConfig{gw(1, "/g"), loopLUN("a", "/a")}
	identity := gw(1, "/g")
	identity.Identity = "other"
	for _, tc := range []struct {
		name    string
		next    []LUNConfig
		wantErr string
	}{
		{"same", []LUNConfig{gw(1, "/g"), loopLUN("a", "/a")}, ""},
		{"other LUN changed", []LUNConfig{gw(1, "/g"), loopLUN("a", "/a2")}, ""},
		{"other LUN removed, one added", []LUNConfig{gw(1, "/g"), loopLUN("b", "/b")}, ""},
		{"group changed", []LUNConfig{gw(2, "/g"), loopLUN("a", "/a")}, "alua_*"},
		{"no longer a gateway", []LUNConfig{loopLUN("g", "/g"), loopLUN("a", "/a")}, "alua_*"},
		{"path changed", []LUNConfig{gw(1, "/g2"), loopLUN("a", "/a")}, "changing it needs a restart"},
		{"identity changed", []LUNConfig{identity, loopLUN("a", "/a")}, "changing it needs a restart"},
		{"removed", []LUNConfig{loopLUN("a", "/a")}, "removing it needs a restart"},
		{"LUN becomes a gateway", []LUNConfig{gw(1, "/g"), func() LUNConfig {
			l := gw(3, "/a")
			l.Name = "a"
			return l
		}()}, "alua_*"},
		{"gateway added", []LUNConfig{gw(1, "/g"), loopLUN("a", "/a"), func() LUNConfig {
			l := gw(3, "/n")
			l.Name = "n"
			return l
		}()}, "adding a gateway LUN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckGatewayReload(started, tc.next)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckGatewayReload = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("CheckGatewayReload = %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}
