// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lunbridge/lunbridge/bridge"
)

// LUNs is what the collector needs from the daemon: a snapshot of every
// LUN. *bridge.Daemon implements it.
type LUNs interface {
	List() []bridge.LUNInfo
}

// senseKeyNames name the sense keys in the sense_key label, as the FUSE
// view names them in its stats keys (SPC-4 table 48, "Sense key
// descriptions"); the reserved ones go by their hex value.
var senseKeyNames = [16]string{
	"no_sense", "recovered_error", "not_ready", "medium_error",
	"hardware_error", "illegal_request", "unit_attention", "data_protect",
	"blank_check", "vendor_specific", "copy_aborted", "aborted_command",
	"0x0c", "volume_overflow", "miscompare", "0x0f",
}

// states are the values of the state label, in bridge.State order.
var states = []bridge.State{bridge.StateOnline, bridge.StateOffline, bridge.StateFailed, bridge.StateStalled}

// bucketStride picks the exposed buckets among bridge's: bridge has
// 1<<bucketStride buckets per power of two, and every bucketStride-th
// bound, starting with bucket 0, is a power of two.
const bucketStride = 4

// upperBounds are the le values of the exposed buckets, in seconds: the
// power-of-two bounds of bridge's histogram.
var upperBounds = func() []float64 {
	var b []float64
	for i := 0; i < bridge.NumBuckets-1; i += bucketStride {
		b = append(b, bridge.BucketBound(i).Seconds())
	}
	return b
}()

// Collector is a prometheus.Collector of every LUN's counters, taken from
// one LUNs.List snapshot per scrape.
type Collector struct {
	luns    LUNs
	version string

	commands, bytes, errors, duration     *prometheus.Desc
	inFlight, inFlightMax, size, readOnly *prometheus.Desc
	state, info, uptime, buildInfo        *prometheus.Desc
	aluaState, aluaOwner, aluaEpoch       *prometheus.Desc // gateway.go
	nowaitReads, nowaitMiss               *prometheus.Desc
	ringKicks, ringWakeups, ringHandoff   *prometheus.Desc
	snap                                  snapshotDescs // snapshots.go
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a collector of the LUNs of luns; version goes into
// lunbridge_build_info.
func NewCollector(luns LUNs, version string) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("lunbridge_"+name, help, labels, nil)
	}
	return &Collector{
		luns:        luns,
		version:     version,
		commands:    d("commands_total", "SCSI commands completed, by kind.", "lun", "kind"),
		bytes:       d("bytes_total", "Data bytes read or written, by kind of command.", "lun", "kind"),
		errors:      d("errors_total", "Commands completed with CHECK CONDITION, by sense key.", "lun", "sense_key"),
		duration:    d("command_duration_seconds", "Time from ring intake to completion, by kind of command.", "lun", "kind"),
		inFlight:    d("in_flight_commands", "Commands received from the kernel and not yet completed.", "lun"),
		inFlightMax: d("in_flight_commands_max", "High-water mark of in_flight_commands since the LUN started or its stats were reset.", "lun"),
		size:        d("size_bytes", "LUN size in bytes.", "lun"),
		readOnly:    d("read_only", "1 if the LUN is write-protected, else 0.", "lun"),
		state:       d("state", "1 for the LUN's current state, 0 for the others.", "lun", "state"),
		info:        d("lun_info", "Description of the LUN; always 1.", "lun", "path", "block_size", "fabric", "fabric_path", "serial", "naa"),
		uptime:      d("lun_uptime_seconds", "Seconds since the LUN started.", "lun"),
		buildInfo:   d("build_info", "lunbridge version; always 1.", "version"),
		aluaState:   d("alua_state", "For a gateway of a group: 1 for its current ALUA state, 0 for the others.", "lun", "state"),
		aluaOwner:   d("alua_owner", "For a gateway of a group: 1 while it owns the shared file, else 0.", "lun"),
		aluaEpoch:   d("alua_epoch", "For a gateway of a group: the ownership epoch (its own while it owns the file).", "lun"),
		nowaitReads: d("inline_page_cache_reads_total", "READs served from the page cache on the ring's waiter (RWF_NOWAIT), on ext4, XFS or Btrfs.", "lun"),
		nowaitMiss:  d("inline_page_cache_misses_total", "READs tried from the page cache that would have blocked and went to a worker.", "lun"),
		ringKicks:   d("ring_kicks_total", "Kicks of the LUN's TCMU ring: system calls that hand the kernel the completions written since the last.", "lun"),
		ringWakeups: d("ring_wakeups_total", "Signals from the kernel that the LUN's TCMU ring woke for.", "lun"),
		ringHandoff: d("ring_handoffs_total", "Times an executor of the LUN's TCMU ring woke another for queued commands.", "lun"),
		snap:        newSnapshotDescs(d),
	}
}

// Describe sends the descriptors of every metric of c.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.commands, c.bytes, c.errors, c.duration, c.inFlight, c.inFlightMax,
		c.size, c.readOnly, c.state, c.info, c.uptime, c.buildInfo,
		c.aluaState, c.aluaOwner, c.aluaEpoch, c.nowaitReads, c.nowaitMiss,
		c.ringKicks, c.ringWakeups, c.ringHandoff,
	} {
		ch <- d
	}
	for _, d := range c.snap.list() {
		ch <- d
	}
}

// Collect takes one snapshot of every LUN and sends its metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1, c.version)
	for _, l := range c.luns.List() {
		c.collectLUN(ch, &l)
	}
}

func (c *Collector) collectLUN(ch chan<- prometheus.Metric, l *bridge.LUNInfo) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	s := &l.Stats
	for k := range bridge.NumKinds {
		ks := &s.Kinds[k]
		kind := bridge.Kind(k).String()
		counter(c.commands, ks.Ops, l.Name, kind)
		counter(c.bytes, ks.Bytes, l.Name, kind)
		count, buckets := histogram(&ks.Latency)
		ch <- prometheus.MustNewConstHistogram(c.duration, count, ks.LatencySum.Seconds(), buckets, l.Name, kind)
	}
	for key, n := range s.SenseKeyErrors {
		counter(c.errors, n, l.Name, senseKeyNames[key])
	}
	gauge(c.inFlight, float64(s.InFlight), l.Name)
	gauge(c.inFlightMax, float64(s.InFlightMax), l.Name)
	counter(c.nowaitReads, s.NowaitReads, l.Name)
	counter(c.nowaitMiss, s.NowaitFallbacks, l.Name)
	counter(c.ringKicks, s.RingKicks, l.Name)
	counter(c.ringWakeups, s.RingWakeups, l.Name)
	counter(c.ringHandoff, s.RingHandoffs, l.Name)
	gauge(c.size, float64(l.Size), l.Name)
	gauge(c.readOnly, boolValue(l.ReadOnly), l.Name)
	for _, st := range states {
		gauge(c.state, boolValue(l.State == st), l.Name, st.String())
	}
	gauge(c.info, 1, l.Name, l.Path, strconv.FormatUint(uint64(l.BlockSize), 10),
		l.Fabric, l.FabricPath, l.Serial, l.NAA)
	gauge(c.uptime, s.Uptime.Seconds(), l.Name)
	c.collectGateway(gauge, l)
	c.collectSnapshots(gauge, l)
}

// histogram converts bridge's histogram into the count and cumulative
// buckets (keyed by upperBounds) of a Prometheus histogram; the sum is
// bridge's exact KindStats.LatencySum.
func histogram(h *bridge.Histogram) (count uint64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, len(upperBounds))
	for i, n := range h {
		count += n
		if i%bucketStride == 0 && i < bridge.NumBuckets-1 {
			buckets[bridge.BucketBound(i).Seconds()] = count
		}
	}
	return count, buckets
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
