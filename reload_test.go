package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/lunbridge/lunbridge/bridge"
)

// fakeLUNs is a lunSet that records what it serves and fails the adds
// it is told to.
type fakeLUNs struct {
	served  map[string]lunConfig
	failAdd map[string]bool // LUNs whose add fails, unless of path /old
	log     []string
}

func (f *fakeLUNs) Add(_ context.Context, o bridge.Options, spec bridge.ExportSpec) (bridge.LUNInfo, error) {
	if f.failAdd[o.Name] && o.Path != "/old" { // restoring the old form works
		f.log = append(f.log, "add "+o.Name+" failed")
		return bridge.LUNInfo{}, fmt.Errorf("add %s: %w", o.Name, bridge.ErrInvalid)
	}
	if _, ok := f.served[o.Name]; ok {
		return bridge.LUNInfo{}, fmt.Errorf("add %s: %w", o.Name, bridge.ErrExists)
	}
	f.served[o.Name] = lunConfig{Options: o, Spec: spec}
	f.log = append(f.log, "add "+o.Name+" "+o.Path)
	return bridge.LUNInfo{Name: o.Name, Path: o.Path}, nil
}

func (f *fakeLUNs) Remove(_ context.Context, name string) error {
	if _, ok := f.served[name]; !ok {
		return fmt.Errorf("remove %s: %w", name, bridge.ErrNotFound)
	}
	delete(f.served, name)
	f.log = append(f.log, "remove "+name)
	return nil
}

func loopLUN(name, path string) lunConfig {
	return lunConfig{Options: bridge.Options{Name: name, Path: path}, Spec: bridge.ExportSpec{Fabric: "loop"}}
}

func iscsiLUN(name, path, iqn string, initiators ...string) lunConfig {
	return lunConfig{Options: bridge.Options{Name: name, Path: path}, Spec: bridge.ExportSpec{
		Fabric: "iscsi", IQN: iqn, Portal: "0.0.0.0:3260", Initiators: initiators}}
}

func names(luns []lunConfig) []string {
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
		cur, next []lunConfig
		failAdd   []string
		want      []string // served afterwards
		wantLog   []string
		wantErr   bool
	}{
		{
			name:    "unchanged",
			cur:     []lunConfig{loopLUN("a", "/a")},
			next:    []lunConfig{loopLUN("a", "/a")},
			want:    []string{"a=/a"},
			wantLog: nil,
		},
		{
			name:    "add remove change",
			cur:     []lunConfig{loopLUN("a", "/a"), loopLUN("b", "/b")},
			next:    []lunConfig{loopLUN("b", "/b2"), loopLUN("c", "/c")},
			want:    []string{"b=/b2", "c=/c"},
			wantLog: []string{"remove a", "remove b", "add b /b2", "add c /c"},
		},
		{
			name:    "a failed change keeps the old LUN",
			cur:     []lunConfig{loopLUN("a", "/old")},
			next:    []lunConfig{loopLUN("a", "/new")},
			failAdd: []string{"a"},
			want:    []string{"a=/old"},
			wantLog: []string{"remove a", "add a failed", "add a /old"},
			wantErr: true,
		},
		{
			name:    "a failed add changes nothing else",
			cur:     []lunConfig{loopLUN("a", "/a")},
			next:    []lunConfig{loopLUN("a", "/a"), loopLUN("b", "/b"), loopLUN("c", "/c")},
			failAdd: []string{"b"},
			want:    []string{"a=/a", "c=/c"},
			wantLog: []string{"add b failed", "add c /c"},
			wantErr: true,
		},
		{
			name: "new target settings move every LUN of the target together",
			cur:  []lunConfig{iscsiLUN("a", "/a", iqn), iscsiLUN("b", "/b", iqn)},
			next: []lunConfig{iscsiLUN("a", "/a", iqn, "iqn.2026-11.org.example:i"),
				iscsiLUN("b", "/b", iqn, "iqn.2026-11.org.example:i")},
			want:    []string{"a=/a", "b=/b"},
			wantLog: []string{"remove a", "remove b", "add a /a", "add b /b"},
		},
		{
			name: "a failed target change restores the whole target",
			cur:  []lunConfig{iscsiLUN("a", "/old", old), iscsiLUN("b", "/old", old)},
			next: []lunConfig{iscsiLUN("a", "/a", old, "iqn.2026-11.org.example:i"),
				iscsiLUN("b", "/b", old, "iqn.2026-11.org.example:i")},
			failAdd: []string{"b"},
			want:    []string{"a=/old", "b=/old"},
			wantLog: []string{"remove a", "remove b", "add a /a", "add b failed", "remove a", "add a /old", "add b /old"},
			wantErr: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeLUNs{served: map[string]lunConfig{}, failAdd: map[string]bool{}}
			for _, l := range tc.cur {
				f.served[l.Name] = l
			}
			for _, n := range tc.failAdd {
				f.failAdd[n] = true
			}
			got, err := applyReload(t.Context(), f, tc.cur, tc.next, io.Discard)
			if (err != nil) != tc.wantErr {
				t.Errorf("applyReload error = %v, want error %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, bridge.ErrInvalid) {
				t.Errorf("applyReload error = %v, want the add's cause", err)
			}
			if g := names(got); !slices.Equal(g, tc.want) {
				t.Errorf("applyReload returned %q, want %q", g, tc.want)
			}
			var served []lunConfig
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
	if !base.same(same) {
		t.Error("a LUN differs from itself with a Progress callback")
	}
	for name, change := range map[string]func(*lunConfig){
		"path":          func(l *lunConfig) { l.Path = "/b" },
		"size":          func(l *lunConfig) { l.Size = 1 << 20 },
		"block size":    func(l *lunConfig) { l.BlockSize = 4096 },
		"read-only":     func(l *lunConfig) { l.ReadOnly = true },
		"write-through": func(l *lunConfig) { l.WriteThrough = true },
		"workers":       func(l *lunConfig) { l.Workers = 3 },
		"preallocate":   func(l *lunConfig) { l.Preallocate = true },
		"direct-io":     func(l *lunConfig) { l.DirectIO = true },
		"max transfer":  func(l *lunConfig) { l.MaxTransfer = 1 << 20 },
		"fabric":        func(l *lunConfig) { l.Spec = bridge.ExportSpec{Fabric: "loop"} },
		"iqn":           func(l *lunConfig) { l.Spec.IQN += "x" },
		"portal":        func(l *lunConfig) { l.Spec.Portal = "127.0.0.1:3260" },
		"initiators":    func(l *lunConfig) { l.Spec.Initiators = nil },
		"allow any":     func(l *lunConfig) { l.Spec.AllowAnyInitiator = true },
		"chap user":     func(l *lunConfig) { l.Spec.CHAPUser = "u" },
		"chap password": func(l *lunConfig) { l.Spec.CHAPPassword = "0123456789ab" },
	} {
		l := base
		l.Spec.Initiators = slices.Clone(base.Spec.Initiators)
		change(&l)
		if base.same(l) {
			t.Errorf("a LUN with another %s is the same", name)
		}
	}
}
