// SPDX-License-Identifier: Apache-2.0

package lio

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/lunbridge/lunbridge/bridge"
)

// LUNConfig is one LUN of a configuration, as serve's config file (or
// export's flags) resolve it: what bridge.Daemon.Add takes, plus the
// LUN's place in a gateway group. A reload compares two lists of them.
type LUNConfig struct {
	bridge.Options
	Spec bridge.ExportSpec
	// Group is the LUN's gateway group (alua_* keys); nil: not a gateway.
	Group *GatewaySettings
}

// GatewaySettings are a LUN's place in a gateway group: the config form
// of export's --alua-* flags (docs/scale-out.md).
type GatewaySettings struct {
	Self  Member
	Peers []Member
}

// Equal reports whether two LUNs' gateway settings are the same; nil is
// "not a gateway".
func (a *GatewaySettings) Equal(b *GatewaySettings) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Self == b.Self && slices.Equal(a.Peers, b.Peers)
}

// Same reports whether two LUN configurations are equal, field by field:
// a field added to bridge.Options must be added here, so that a reload
// notices a change in it (reflect.DeepEqual would also compare
// functions). The gateway group is not compared: CheckGatewayReload
// refuses any reload that touches a gateway LUN.
func (a LUNConfig) Same(b LUNConfig) bool {
	x, y := a.Options, b.Options
	return x.Name == y.Name && x.Path == y.Path && x.Size == y.Size && x.BlockSize == y.BlockSize &&
		x.ReadOnly == y.ReadOnly && x.WriteThrough == y.WriteThrough && x.Workers == y.Workers &&
		x.Preallocate == y.Preallocate && x.DirectIO == y.DirectIO && x.MaxTransfer == y.MaxTransfer &&
		sameSpec(a.Spec, b.Spec)
}

// sameSpec compares resolved specs; SameTarget compares the settings of
// an iSCSI target (initiators as a set, CHAP, allow-any).
func sameSpec(a, b bridge.ExportSpec) bool {
	return a.Fabric == b.Fabric && a.IQN == b.IQN && a.Portal == b.Portal && SameTarget(a, b) == nil
}

// CheckGatewayReload refuses a reload that would touch a gateway LUN:
// its lease runs from start to shutdown and holds the LUN (drain, fence),
// so a gateway LUN can be neither added, removed nor changed (group
// settings or any other key) by a reload, only by a restart. started is
// the configuration serving started with; as every reload that touches a
// gateway LUN is refused, its gateway LUNs are still the ones served.
func CheckGatewayReload(started, next []LUNConfig) error {
	cur := map[string]LUNConfig{}
	for _, l := range started {
		cur[l.Name] = l
	}
	want := map[string]LUNConfig{}
	for _, l := range next {
		want[l.Name] = l
	}
	for _, o := range started {
		n, ok := want[o.Name]
		switch {
		case o.Group == nil && (!ok || n.Group == nil):
		case !ok:
			return fmt.Errorf("LUN %s is a gateway: removing it needs a restart", o.Name)
		case !o.Group.Equal(n.Group):
			return fmt.Errorf("LUN %s: its gateway settings (alua_*) can change only with a restart", o.Name)
		case !o.Same(n) || o.Identity != n.Identity:
			return fmt.Errorf("LUN %s is a gateway: changing it needs a restart", o.Name)
		}
	}
	for _, n := range next {
		if _, had := cur[n.Name]; !had && n.Group != nil {
			return fmt.Errorf("LUN %s: adding a gateway LUN needs a restart", n.Name)
		}
	}
	return nil
}

// LUNSet is what a reload changes: the daemon's LUNs, through the
// caller, which adds and removes them on a bridge.Daemon and says so to
// the user (progress bars and messages are the command's business).
type LUNSet interface {
	Add(ctx context.Context, l LUNConfig) error
	Remove(ctx context.Context, name string) error
}

// swap is one step of a reload: the LUNs in old go and those in new come,
// together or not at all.
type swap struct {
	old, new []LUNConfig
}

// planReload groups the difference between cur and next into swaps. A
// LUN that is gone, new or changed is a swap of its own, unless the
// settings of its iSCSI target changed: then every LUN of that target is
// in one swap, as one target cannot hold two ACLs or portals at once.
// Unchanged LUNs are in no swap.
func planReload(cur, next []LUNConfig) []swap {
	old := map[string]LUNConfig{}
	for _, l := range cur {
		old[l.Name] = l
	}
	want := map[string]LUNConfig{}
	for _, l := range next {
		want[l.Name] = l
	}
	// Targets whose settings differ between cur and next.
	curTarget := map[string]bridge.ExportSpec{}
	for _, l := range cur {
		if l.Spec.Fabric == FabricISCSI {
			curTarget[l.Spec.IQN] = l.Spec
		}
	}
	retarget := map[string]bool{}
	for _, l := range next {
		if s, ok := curTarget[l.Spec.IQN]; ok && l.Spec.Fabric == FabricISCSI && SameTarget(s, l.Spec) != nil {
			retarget[l.Spec.IQN] = true
		}
	}
	retargeted := func(l LUNConfig) bool { return l.Spec.Fabric == FabricISCSI && retarget[l.Spec.IQN] }
	changed := func(o, n LUNConfig) bool { return !o.Same(n) || retargeted(o) || retargeted(n) }
	key := func(l LUNConfig) string {
		if retargeted(l) {
			return "target " + l.Spec.IQN
		}
		return "lun " + l.Name
	}
	// A LUN whose old and new forms fall in different groups joins them
	// (union-find over group keys).
	parent := map[string]string{}
	var find func(string) string
	find = func(k string) string {
		if p, ok := parent[k]; ok && p != k {
			r := find(p)
			parent[k] = r
			return r
		}
		return k
	}
	for _, o := range cur {
		if n, ok := want[o.Name]; ok && changed(o, n) {
			if a, b := find(key(o)), find(key(n)); a != b {
				parent[b] = a
			}
		}
	}
	groups := map[string]*swap{}
	var order []string
	group := func(l LUNConfig) *swap {
		k := find(key(l))
		sw := groups[k]
		if sw == nil {
			sw = &swap{}
			groups[k] = sw
			order = append(order, k)
		}
		return sw
	}
	for _, o := range cur {
		if n, keep := want[o.Name]; keep && !changed(o, n) {
			continue
		}
		sw := group(o)
		sw.old = append(sw.old, o)
	}
	for _, n := range next {
		if o, had := old[n.Name]; had && !changed(o, n) {
			continue
		}
		sw := group(n)
		sw.new = append(sw.new, n)
	}
	out := make([]swap, len(order))
	for i, k := range order {
		out[i] = *groups[k]
	}
	return out
}

// ApplyReload moves d from the LUNs in cur to those in next, swap by
// swap (planReload). Each swap is transactional: its old LUNs are
// removed and its new ones added; if an add fails, the new ones are
// removed again and the old ones come back, so a LUN is either in its
// new form or its old one. (A LUN keeps its name, which names its
// backstore, so its new form cannot be up before its old form goes.) It
// returns the LUNs now served and every swap's error.
func ApplyReload(ctx context.Context, d LUNSet, cur, next []LUNConfig) ([]LUNConfig, error) {
	served := map[string]LUNConfig{}
	for _, l := range cur {
		served[l.Name] = l
	}
	var errs []error
	for _, sw := range planReload(cur, next) {
		if err := applySwap(ctx, d, sw); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, l := range sw.old {
			delete(served, l.Name)
		}
		for _, l := range sw.new {
			served[l.Name] = l
		}
	}
	// Keep the config's order for the LUNs it has, then the others.
	var now []LUNConfig
	for _, l := range next {
		if s, ok := served[l.Name]; ok {
			now = append(now, s)
			delete(served, l.Name)
		}
	}
	for _, l := range cur {
		if s, ok := served[l.Name]; ok {
			now = append(now, s)
		}
	}
	return now, errors.Join(errs...)
}

// applySwap removes sw.old and adds sw.new, or leaves things as they
// were and says why.
func applySwap(ctx context.Context, d LUNSet, sw swap) error {
	var removed []LUNConfig
	undo := func(cause error, added []LUNConfig) error {
		errs := []error{cause}
		for i := len(added) - 1; i >= 0; i-- {
			if err := d.Remove(ctx, added[i].Name); err != nil {
				errs = append(errs, fmt.Errorf("undo: %w", err))
			}
		}
		for _, l := range removed {
			if err := d.Add(ctx, l); err != nil {
				errs = append(errs, fmt.Errorf("undo: LUN %s could not be restored: %w", l.Name, err))
			}
		}
		return errors.Join(errs...)
	}
	for _, l := range sw.old {
		if err := d.Remove(ctx, l.Name); err != nil {
			return undo(fmt.Errorf("reload: %w", err), nil)
		}
		removed = append(removed, l)
	}
	var added []LUNConfig
	for _, l := range sw.new {
		if err := d.Add(ctx, l); err != nil {
			return undo(fmt.Errorf("reload: add %s: %w", l.Name, err), added)
		}
		added = append(added, l)
	}
	return nil
}
