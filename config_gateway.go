// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/lio"
)

// gatewayConfig is a LUN's place in a gateway group, from the config
// file's alua_* keys (the config form of export's --alua-* flags,
// gateways.go; docs/scale-out.md).
type gatewayConfig = lio.GatewaySettings

// resolveGateway checks a LUN's alua_* keys and returns its gateway
// settings, nil when it has none. The rules are export's: alua_port,
// alua_peers and alua_identity need alua_group; the port defaults to the
// group; ids are 1 to 65535. lease.Open checks that the ids are unique.
func (l lunFileConfig) resolveGateway() (*gatewayConfig, error) {
	if l.ALUAGroup == 0 {
		if l.ALUAPort != 0 || len(l.ALUAPeers) > 0 || l.ALUAIdentity != "" {
			return nil, fmt.Errorf("LUN %s: alua_port, alua_peers and alua_identity need alua_group", l.Name)
		}
		return nil, nil
	}
	if l.ALUAGroup < 1 || l.ALUAGroup > 65535 {
		return nil, fmt.Errorf("LUN %s: alua_group %d: want 1 to 65535", l.Name, l.ALUAGroup)
	}
	port := l.ALUAPort
	if port == 0 {
		port = l.ALUAGroup
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("LUN %s: alua_port %d: want 1 to 65535", l.Name, l.ALUAPort)
	}
	if l.ALUAIdentity != "" {
		if err := bridge.ValidName(l.ALUAIdentity); err != nil {
			return nil, fmt.Errorf("LUN %s: alua_identity: %w", l.Name, err)
		}
	}
	g := &gatewayConfig{Self: lio.Member{Group: uint16(l.ALUAGroup), RelativePort: uint16(port)}}
	ids := map[uint16]bool{g.Self.Group: true}
	ports := map[uint16]bool{g.Self.RelativePort: true}
	for _, s := range l.ALUAPeers {
		m, err := lio.ParseMember(s)
		if err != nil {
			return nil, fmt.Errorf("LUN %s: alua_peers %q: %w", l.Name, s, err)
		}
		if ids[m.Group] || ports[m.RelativePort] {
			return nil, fmt.Errorf("LUN %s: alua_peers %q: group and port ids must be unique across the gateways", l.Name, s)
		}
		ids[m.Group], ports[m.RelativePort] = true, true
		g.Peers = append(g.Peers, m)
	}
	return g, nil
}

// openConfigGateways opens one lease per LUN that has gateway settings,
// in LUN.Path + ".lease", and sets the LUN's Gateway, as export's
// openGateways does for its flags; nil when no LUN is a gateway. The
// caller runs the leases (lio.Gateways.Run), or closes them if it never
// does.
func openConfigGateways(luns []lunConfig) (*lio.Gateways, error) {
	var gs *lio.Gateways
	for i := range luns {
		g := luns[i].Group
		if g == nil {
			continue
		}
		if gs == nil {
			gs = lio.NewGateways(lio.GatewayConfig{Logger: slog.Default()})
		}
		gw, err := gs.OpenAs(luns[i].Name, luns[i].Path, g.Self, g.Peers)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("LUN %s: %w", luns[i].Name, err), gs.Close())
		}
		luns[i].Gateway = gw
	}
	return gs, nil
}

// checkIdentities refuses two LUNs that would show the initiator one
// disk: the NAA designator and serial derive from alua_identity or,
// without it, from the LUN name (bridge.Options.Identity).
func checkIdentities(luns []lunConfig) error {
	seen := map[string]string{}
	for _, l := range luns {
		id := l.Name
		if l.Identity != "" {
			id = l.Identity
		}
		if other, ok := seen[id]; ok {
			return fmt.Errorf("LUNs %s and %s would show one disk identity %q (alua_identity)", other, l.Name, id)
		}
		seen[id] = l.Name
	}
	return nil
}
