// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lunbridge/lunbridge/bridge"
)

func TestSnapshotMetrics(t *testing.T) {
	l := testLUN()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l.Snapshots = []bridge.SnapshotInfo{
		{Name: "a", State: bridge.SnapshotReady, Method: bridge.MethodReflink, Copied: 1 << 30, Created: t0, Pause: 3 * time.Millisecond},
		{Name: "b", State: bridge.SnapshotCopying, Method: bridge.MethodCopy, Copied: 5 << 20, Created: t0.Add(time.Hour), Pause: 250 * time.Microsecond},
		{Name: "c", State: bridge.SnapshotFailed, Method: bridge.MethodCopy, Copied: 1 << 20, Created: t0.Add(-time.Hour)},
	}
	bare := testLUN()
	bare.Name = "bare"
	c := NewCollector(&fakeLUNs{luns: []bridge.LUNInfo{l, bare}}, "v")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	got := map[string]float64{}
	for _, name := range []string{"lunbridge_snapshots", "lunbridge_snapshot_copied_bytes", "lunbridge_snapshot_last_pause_seconds"} {
		for _, m := range gather(t, reg, name) {
			key := name + "," + label(m, "lun")
			if s := label(m, "state"); s != "" {
				key += "," + s
			}
			got[key] = m.GetGauge().GetValue()
		}
	}
	n := l.Name
	want := map[string]float64{
		"lunbridge_snapshots," + n + ",copying":      1,
		"lunbridge_snapshots," + n + ",ready":        1,
		"lunbridge_snapshots," + n + ",failed":       1,
		"lunbridge_snapshot_copied_bytes," + n:       6 << 20,
		"lunbridge_snapshot_last_pause_seconds," + n: 0.00025,
		"lunbridge_snapshots,bare,copying":           0,
		"lunbridge_snapshots,bare,ready":             0,
		"lunbridge_snapshots,bare,failed":            0,
		"lunbridge_snapshot_copied_bytes,bare":       0,
	}
	if !maps.Equal(got, want) {
		t.Errorf("snapshot metrics = %v, want %v", got, want)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}
