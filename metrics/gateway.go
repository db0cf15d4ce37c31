// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lunbridge/lunbridge/bridge"
)

// collectGateway sends the gateway metrics of a LUN that is one gateway
// of a group; nothing for other LUNs.
func (c *Collector) collectGateway(gauge func(d *prometheus.Desc, v float64, labels ...string), l *bridge.LUNInfo) {
	g := l.Gateway
	if g == nil {
		return
	}
	for _, s := range bridge.GatewayStates {
		gauge(c.aluaState, boolValue(g.State == s), l.Name, strings.ReplaceAll(s.String(), "/", "_"))
	}
	gauge(c.aluaOwner, boolValue(g.Owner), l.Name)
	gauge(c.aluaEpoch, float64(g.Epoch), l.Name)
}
