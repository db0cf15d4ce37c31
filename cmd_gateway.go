package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/lease"
)

// gatewayFlags join export's LUNs to a gateway group (docs/scale-out.md).
func gatewayFlags() []cli.Flag {
	return []cli.Flag{
		&cli.UintFlag{Name: "alua-group", Usage: "serve the FILEs as one gateway of several: this gateway's ALUA target port group id (1-65535); ownership is decided by a lease in FILE.lease"},
		&cli.UintFlag{Name: "alua-port", Usage: "this gateway's relative target port id (default: the group id)"},
		&cli.StringSliceFlag{Name: "alua-peer", Usage: "another gateway of the group as GROUP[:PORT] (repeatable; PORT defaults to GROUP)"},
		&cli.StringFlag{Name: "alua-identity", Usage: "with one FILE: derive the disk's NAA designator and serial from this name instead of the LUN name (gateways of one group must show one disk)"},
	}
}

// parseMember parses GROUP[:PORT].
func parseMember(s string) (lease.Member, error) {
	g, p, found := strings.Cut(s, ":")
	group, err := strconv.ParseUint(g, 10, 16)
	if err != nil || group == 0 {
		return lease.Member{}, fmt.Errorf("group %q: want 1 to 65535", g)
	}
	port := group
	if found {
		if port, err = strconv.ParseUint(p, 10, 16); err != nil || port == 0 {
			return lease.Member{}, fmt.Errorf("port %q: want 1 to 65535", p)
		}
	}
	return lease.Member{Group: uint16(group), RelativePort: uint16(port)}, nil
}

// openGateways opens one lease per LUN when --alua-group is given and
// sets the LUNs' Gateway. The caller runs them with runGateways, or
// closes them if it never does.
func openGateways(c *cli.Context, luns []lunConfig) ([]*lease.Lease, error) {
	if !c.IsSet("alua-group") {
		if c.IsSet("alua-port") || len(c.StringSlice("alua-peer")) > 0 || c.IsSet("alua-identity") {
			return nil, usageErr("--alua-port, --alua-peer and --alua-identity need --alua-group")
		}
		return nil, nil
	}
	if id := c.String("alua-identity"); id != "" {
		if len(luns) != 1 {
			return nil, usageErr("--alua-identity: give exactly one FILE")
		}
		if err := bridge.ValidName(id); err != nil {
			return nil, usageErr("--alua-identity: %v", err)
		}
		luns[0].Identity = id
	}
	port := c.Uint("alua-port")
	if port == 0 {
		port = c.Uint("alua-group")
	}
	self, err := parseMember(fmt.Sprintf("%d:%d", c.Uint("alua-group"), port))
	if err != nil {
		return nil, usageErr("--alua-group/--alua-port: %v", err)
	}
	var peers []lease.Member
	for _, s := range c.StringSlice("alua-peer") {
		m, err := parseMember(s)
		if err != nil {
			return nil, usageErr("--alua-peer %q: %v", s, err)
		}
		peers = append(peers, m)
	}
	var ls []*lease.Lease
	for i := range luns {
		l, err := lease.Open(lease.Config{
			Path:   luns[i].Path + ".lease",
			Self:   self,
			Peers:  peers,
			Logger: slog.Default().With("lun", luns[i].Name),
		})
		if err != nil {
			return nil, errors.Join(usageErr("%s: %v", luns[i].Name, err), closeGateways(ls))
		}
		ls = append(ls, l)
		luns[i].Gateway = gateway{l}
	}
	return ls, nil
}

// closeGateways closes leases that never ran.
func closeGateways(ls []*lease.Lease) error {
	var errs []error
	for _, l := range ls {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// runGateways runs the leases until the returned stop is called; stop
// gives up ownership (drain, sync, release) and returns Run's errors.
func runGateways(ctx context.Context, ls []*lease.Lease) (stop func() error) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, len(ls))
	for _, l := range ls {
		go func() { done <- l.Run(ctx) }()
	}
	return func() error {
		cancel()
		var errs []error
		for range ls {
			errs = append(errs, <-done)
		}
		return errors.Join(errs...)
	}
}

// gateway adapts a lease to bridge.Gateway.
type gateway struct{ *lease.Lease }

var _ bridge.Gateway = gateway{}

// Info reports the lease's status in bridge's terms.
func (g gateway) Info() bridge.GatewayInfo {
	s := g.Status()
	return bridge.GatewayInfo{
		Group:      g.Local().Group,
		State:      s.State,
		Owner:      s.Owner,
		Epoch:      s.Epoch,
		OwnerGroup: s.OwnerGroup,
		OwnerKnown: s.OwnerKnown,
	}
}
