// SPDX-License-Identifier: Apache-2.0

package lio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/lease"
)

// Member is one gateway of a group: its ALUA target port group and
// relative target port (docs/scale-out.md).
type Member = lease.Member

// ParseMember parses GROUP[:PORT]; PORT defaults to GROUP, and both are
// 1 to 65535.
func ParseMember(s string) (Member, error) {
	g, p, found := strings.Cut(s, ":")
	group, err := strconv.ParseUint(g, 10, 16)
	if err != nil || group == 0 {
		return Member{}, fmt.Errorf("group %q: want 1 to 65535", g)
	}
	port := group
	if found {
		if port, err = strconv.ParseUint(p, 10, 16); err != nil || port == 0 {
			return Member{}, fmt.Errorf("port %q: want 1 to 65535", p)
		}
	}
	return Member{Group: uint16(group), RelativePort: uint16(port)}, nil
}

// GatewayConfig places this lunbridge in a gateway group.
type GatewayConfig struct {
	Self   Member   // this gateway
	Peers  []Member // the other gateways of the group
	Logger *slog.Logger
}

// Gateways are the ownership leases of the LUNs this lunbridge serves
// as one gateway of a group: one lease per LUN, in the file FILE.lease
// next to its backing file. Open them before the LUNs are added, Run
// them once the LUNs are served, and stop them before the LUNs go;
// Close closes leases that never ran. A nil *Gateways has no leases.
type Gateways struct {
	cfg GatewayConfig
	ls  []*lease.Lease
}

// NewGateways returns an empty set of leases for cfg.
func NewGateways(cfg GatewayConfig) *Gateways {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Gateways{cfg: cfg}
}

// Open opens the lease of the LUN name backed by file, as the member and
// with the peers of gs's GatewayConfig, and returns the gateway to set in
// its bridge.Options.
func (gs *Gateways) Open(name, file string) (bridge.Gateway, error) {
	return gs.OpenAs(name, file, gs.cfg.Self, gs.cfg.Peers)
}

// OpenAs is Open for a LUN with its own place in a group (serve's config
// gives each LUN its alua_* keys): self and peers instead of gs's.
func (gs *Gateways) OpenAs(name, file string, self Member, peers []Member) (bridge.Gateway, error) {
	l, err := lease.Open(lease.Config{
		Path:   file + ".lease",
		Self:   self,
		Peers:  peers,
		Logger: gs.cfg.Logger.With("lun", name),
	})
	if err != nil {
		return nil, err
	}
	gs.ls = append(gs.ls, l)
	return gateway{l}, nil
}

// Close closes leases that never ran.
func (gs *Gateways) Close() error {
	if gs == nil {
		return nil
	}
	var errs []error
	for _, l := range gs.ls {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// Run runs the leases until the returned stop is called; stop gives up
// ownership (drain, sync, release) and returns Run's errors.
func (gs *Gateways) Run(ctx context.Context) (stop func() error) {
	if gs == nil {
		return func() error { return nil }
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, len(gs.ls))
	for _, l := range gs.ls {
		go func() { done <- l.Run(ctx) }()
	}
	return func() error {
		cancel()
		var errs []error
		for range gs.ls {
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
