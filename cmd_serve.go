package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/lio"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve the targets and LUNs of a config file; SIGHUP reloads it",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "config", Required: true, Usage: "TOML config file (see examples/lunbridge.toml)"},
			&cli.StringFlag{Name: "configfs", Value: lio.DefaultConfigfs, Hidden: true},
		}, experimentalFlags()...),
		Action: runServe,
	}
}

func runServe(c *cli.Context) error {
	path := c.String("config")
	host := hostname()
	dc, err := loadConfig(path, host)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	// Read once: the rings of LUNs a reload adds get them too (lio.New).
	if dc.Tuning, err = tuningFlags(c); err != nil {
		return err
	}
	dc.Targetcli = true
	if dc.Gateways, err = openConfigGateways(dc.LUNs); err != nil {
		return cli.Exit(fmt.Sprintf("config %s: %v", path, err), exitUsage)
	}
	started := dc.LUNs
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return runDaemon(c.Context, dc, daemonIO{
		Out:      c.App.Writer,
		Configfs: c.String("configfs"),
		Reload:   hup,
		Load: func() (daemonConfig, error) {
			next, err := loadConfig(path, host)
			if err != nil {
				return next, err
			}
			if err := checkGatewayReload(started, next.LUNs); err != nil {
				return next, fmt.Errorf("config %s: %w", path, err)
			}
			return next, nil
		},
	})
}

// lunSet is what a reload changes: bridge.Daemon.
type lunSet interface {
	Add(ctx context.Context, o bridge.Options, spec bridge.ExportSpec) (bridge.LUNInfo, error)
	Remove(ctx context.Context, name string) error
}

// swap is one step of a reload: the LUNs in old go and those in new come,
// together or not at all.
type swap struct {
	old, new []lunConfig
}

// planReload groups the difference between cur and next into swaps. A
// LUN that is gone, new or changed is a swap of its own, unless the
// settings of its iSCSI target changed: then every LUN of that target is
// in one swap, as one target cannot hold two ACLs or portals at once.
// Unchanged LUNs are in no swap.
func planReload(cur, next []lunConfig) []swap {
	old := map[string]lunConfig{}
	for _, l := range cur {
		old[l.Name] = l
	}
	want := map[string]lunConfig{}
	for _, l := range next {
		want[l.Name] = l
	}
	// Targets whose settings differ between cur and next.
	curTarget := map[string]bridge.ExportSpec{}
	for _, l := range cur {
		if l.Spec.Fabric == lio.FabricISCSI {
			curTarget[l.Spec.IQN] = l.Spec
		}
	}
	retarget := map[string]bool{}
	for _, l := range next {
		if s, ok := curTarget[l.Spec.IQN]; ok && l.Spec.Fabric == lio.FabricISCSI && lio.SameTarget(s, l.Spec) != nil {
			retarget[l.Spec.IQN] = true
		}
	}
	retargeted := func(l lunConfig) bool { return l.Spec.Fabric == lio.FabricISCSI && retarget[l.Spec.IQN] }
	changed := func(o, n lunConfig) bool { return !o.same(n) || retargeted(o) || retargeted(n) }
	key := func(l lunConfig) string {
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
	group := func(l lunConfig) *swap {
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

// applyReload moves the daemon from the LUNs in cur to those in next,
// swap by swap (planReload). Each swap is transactional: its old LUNs are
// removed and its new ones added; if an add fails, the new ones are
// removed again and the old ones come back, so a LUN is either in its
// new form or its old one. (A LUN keeps its name, which names its
// backstore, so its new form cannot be up before its old form goes.) It
// returns the LUNs now served and every swap's error.
func applyReload(ctx context.Context, d lunSet, cur, next []lunConfig, out io.Writer) ([]lunConfig, error) {
	served := map[string]lunConfig{}
	for _, l := range cur {
		served[l.Name] = l
	}
	var errs []error
	for _, sw := range planReload(cur, next) {
		if err := applySwap(ctx, d, sw, out); err != nil {
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
	var now []lunConfig
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
func applySwap(ctx context.Context, d lunSet, sw swap, out io.Writer) error {
	var removed []lunConfig
	undo := func(cause error, added []lunConfig) error {
		errs := []error{cause}
		for i := len(added) - 1; i >= 0; i-- {
			if err := d.Remove(ctx, added[i].Name); err != nil {
				errs = append(errs, fmt.Errorf("undo: %w", err))
			}
		}
		for _, l := range removed {
			if err := addLUN(ctx, d, l, out); err != nil {
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
		fmt.Fprintf(out, "%s: removed\n", l.Name)
	}
	var added []lunConfig
	for _, l := range sw.new {
		if err := addLUN(ctx, d, l, out); err != nil {
			return undo(fmt.Errorf("reload: add %s: %w", l.Name, err), added)
		}
		added = append(added, l)
	}
	return nil
}
