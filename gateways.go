// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/lio"
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

// openGateways opens one lease per LUN when --alua-group is given and
// sets the LUNs' Gateway; nil without --alua-group. The caller runs them
// (lio.Gateways.Run), or closes them if it never does.
func openGateways(c *cli.Context, luns []lunConfig) (*lio.Gateways, error) {
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
	self, err := lio.ParseMember(fmt.Sprintf("%d:%d", c.Uint("alua-group"), port))
	if err != nil {
		return nil, usageErr("--alua-group/--alua-port: %v", err)
	}
	var peers []lio.Member
	for _, s := range c.StringSlice("alua-peer") {
		m, err := lio.ParseMember(s)
		if err != nil {
			return nil, usageErr("--alua-peer %q: %v", s, err)
		}
		peers = append(peers, m)
	}
	gs := lio.NewGateways(lio.GatewayConfig{Self: self, Peers: peers, Logger: slog.Default()})
	for i := range luns {
		gw, err := gs.Open(luns[i].Name, luns[i].Path)
		if err != nil {
			return nil, errors.Join(usageErr("%s: %v", luns[i].Name, err), gs.Close())
		}
		luns[i].Gateway = gw
	}
	return gs, nil
}
