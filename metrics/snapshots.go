// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lunbridge/lunbridge/bridge"
)

// snapshotStates are the values of lunbridge_snapshots' state label.
var snapshotStates = []string{bridge.SnapshotCopying, bridge.SnapshotReady, bridge.SnapshotFailed}

// snapshotDescs are the snapshot metrics (docs/snapshots.md).
type snapshotDescs struct {
	snapshots, copied, lastPause *prometheus.Desc
}

func newSnapshotDescs(d func(name, help string, labels ...string) *prometheus.Desc) snapshotDescs {
	return snapshotDescs{
		snapshots: d("snapshots", "Snapshots of the LUN, by state (copying, ready, failed).", "lun", "state"),
		copied:    d("snapshot_copied_bytes", "Bytes the LUN's snapshots made by copy (not reflink) hold so far.", "lun"),
		lastPause: d("snapshot_last_pause_seconds", "How long the LUN's writes were held to fix the point in time of its newest snapshot.", "lun"),
	}
}

func (s snapshotDescs) list() []*prometheus.Desc {
	return []*prometheus.Desc{s.snapshots, s.copied, s.lastPause}
}

// collectSnapshots sends the snapshot metrics of a LUN; the last pause
// only once it has a snapshot.
func (c *Collector) collectSnapshots(gauge func(d *prometheus.Desc, v float64, labels ...string), l *bridge.LUNInfo) {
	n := map[string]int{}
	var copied int64
	var newest *bridge.SnapshotInfo
	for i := range l.Snapshots {
		s := &l.Snapshots[i]
		n[s.State]++
		if s.Method == bridge.MethodCopy {
			copied += s.Copied
		}
		if newest == nil || s.Created.After(newest.Created) {
			newest = s
		}
	}
	for _, st := range snapshotStates {
		gauge(c.snap.snapshots, float64(n[st]), l.Name, st)
	}
	gauge(c.snap.copied, float64(copied), l.Name)
	if newest != nil {
		gauge(c.snap.lastPause, newest.Pause.Seconds(), l.Name)
	}
}
