// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"maps"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lunbridge/lunbridge/bridge"
)

func TestGatewayMetrics(t *testing.T) {
	gw := testLUN()
	gw.Name = "gw"
	gw.Gateway = &bridge.GatewayInfo{Group: 2, State: bridge.GatewayStates[2], Epoch: 5}
	c := NewCollector(&fakeLUNs{luns: []bridge.LUNInfo{gw, testLUN()}}, "v")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	got := map[string]float64{}
	for _, name := range []string{"lunbridge_alua_state", "lunbridge_alua_owner", "lunbridge_alua_epoch"} {
		for _, m := range gather(t, reg, name) {
			key := name + "," + label(m, "lun")
			if s := label(m, "state"); s != "" {
				key += "," + s
			}
			got[key] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"lunbridge_alua_owner,gw":                      0,
		"lunbridge_alua_epoch,gw":                      5,
		"lunbridge_alua_state,gw,standby":              1,
		"lunbridge_alua_state,gw,active_optimized":     0,
		"lunbridge_alua_state,gw,active_non-optimized": 0,
		"lunbridge_alua_state,gw,unavailable":          0,
		"lunbridge_alua_state,gw,transitioning":        0,
	}
	if !maps.Equal(got, want) {
		t.Errorf("gateway metrics = %v, want %v (and none for the plain LUN)", got, want)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}
