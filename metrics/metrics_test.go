// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"context"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/lunbridge/lunbridge/bridge"
)

// fakeLUNs returns a fixed snapshot and counts the calls.
type fakeLUNs struct {
	luns  []bridge.LUNInfo
	calls int
}

func (f *fakeLUNs) List() []bridge.LUNInfo {
	f.calls++
	return f.luns
}

func testLUN() bridge.LUNInfo {
	l := bridge.LUNInfo{
		Name: "disk0", Path: "/srv/disk0.img", Size: 1 << 30, BlockSize: 512,
		Serial: "abc", NAA: "6001405", Fabric: "loop", FabricPath: "/dev/sdb",
		State: bridge.StateStalled, ReadOnly: true,
	}
	for k := range bridge.NumKinds {
		l.Stats.Kinds[k].Ops = uint64(10 + k)
		l.Stats.Kinds[k].Bytes = uint64(4096 * (k + 1))
	}
	l.Stats.SenseKeyErrors[3] = 2 // medium_error
	l.Stats.SenseKeyErrors[5] = 7 // illegal_request
	l.Stats.InFlight = 3
	l.Stats.InFlightMax = 9
	l.Stats.NowaitReads, l.Stats.NowaitFallbacks = 40, 2
	l.Stats.RingKicks, l.Stats.RingWakeups, l.Stats.RingHandoffs = 5, 6, 1
	l.Stats.Uptime = 90 * time.Second
	return l
}

func TestCollectorCounters(t *testing.T) {
	c := NewCollector(&fakeLUNs{luns: []bridge.LUNInfo{testLUN()}}, "1.2.3")
	want := `
# HELP lunbridge_commands_total SCSI commands completed, by kind.
# TYPE lunbridge_commands_total counter
lunbridge_commands_total{kind="compare_and_write",lun="disk0"} 15
lunbridge_commands_total{kind="other",lun="disk0"} 16
lunbridge_commands_total{kind="read",lun="disk0"} 10
lunbridge_commands_total{kind="sync",lun="disk0"} 12
lunbridge_commands_total{kind="unmap",lun="disk0"} 13
lunbridge_commands_total{kind="write",lun="disk0"} 11
lunbridge_commands_total{kind="write_same",lun="disk0"} 14
# HELP lunbridge_bytes_total Data bytes read or written, by kind of command.
# TYPE lunbridge_bytes_total counter
lunbridge_bytes_total{kind="compare_and_write",lun="disk0"} 24576
lunbridge_bytes_total{kind="other",lun="disk0"} 28672
lunbridge_bytes_total{kind="read",lun="disk0"} 4096
lunbridge_bytes_total{kind="sync",lun="disk0"} 12288
lunbridge_bytes_total{kind="unmap",lun="disk0"} 16384
lunbridge_bytes_total{kind="write",lun="disk0"} 8192
lunbridge_bytes_total{kind="write_same",lun="disk0"} 20480
# HELP lunbridge_in_flight_commands Commands received from the kernel and not yet completed.
# TYPE lunbridge_in_flight_commands gauge
lunbridge_in_flight_commands{lun="disk0"} 3
# HELP lunbridge_in_flight_commands_max High-water mark of in_flight_commands since the LUN started or its stats were reset.
# TYPE lunbridge_in_flight_commands_max gauge
lunbridge_in_flight_commands_max{lun="disk0"} 9
# HELP lunbridge_size_bytes LUN size in bytes.
# TYPE lunbridge_size_bytes gauge
lunbridge_size_bytes{lun="disk0"} 1.073741824e+09
# HELP lunbridge_read_only 1 if the LUN is write-protected, else 0.
# TYPE lunbridge_read_only gauge
lunbridge_read_only{lun="disk0"} 1
# HELP lunbridge_state 1 for the LUN's current state, 0 for the others.
# TYPE lunbridge_state gauge
lunbridge_state{lun="disk0",state="failed"} 0
lunbridge_state{lun="disk0",state="offline"} 0
lunbridge_state{lun="disk0",state="online"} 0
lunbridge_state{lun="disk0",state="stalled"} 1
# HELP lunbridge_lun_info Description of the LUN; always 1.
# TYPE lunbridge_lun_info gauge
lunbridge_lun_info{block_size="512",fabric="loop",fabric_path="/dev/sdb",lun="disk0",naa="6001405",path="/srv/disk0.img",serial="abc"} 1
# HELP lunbridge_lun_uptime_seconds Seconds since the LUN started.
# TYPE lunbridge_lun_uptime_seconds gauge
lunbridge_lun_uptime_seconds{lun="disk0"} 90
# HELP lunbridge_build_info lunbridge version; always 1.
# TYPE lunbridge_build_info gauge
lunbridge_build_info{version="1.2.3"} 1
# HELP lunbridge_inline_page_cache_reads_total READs served from the page cache on the ring's waiter (RWF_NOWAIT), on ext4, XFS or Btrfs.
# TYPE lunbridge_inline_page_cache_reads_total counter
lunbridge_inline_page_cache_reads_total{lun="disk0"} 40
# HELP lunbridge_inline_page_cache_misses_total READs tried from the page cache that would have blocked and went to a worker.
# TYPE lunbridge_inline_page_cache_misses_total counter
lunbridge_inline_page_cache_misses_total{lun="disk0"} 2
# HELP lunbridge_ring_kicks_total Kicks of the LUN's TCMU ring: system calls that hand the kernel the completions written since the last.
# TYPE lunbridge_ring_kicks_total counter
lunbridge_ring_kicks_total{lun="disk0"} 5
# HELP lunbridge_ring_wakeups_total Signals from the kernel that the LUN's TCMU ring woke for.
# TYPE lunbridge_ring_wakeups_total counter
lunbridge_ring_wakeups_total{lun="disk0"} 6
# HELP lunbridge_ring_handoffs_total Times an executor of the LUN's TCMU ring woke another for queued commands.
# TYPE lunbridge_ring_handoffs_total counter
lunbridge_ring_handoffs_total{lun="disk0"} 1
`
	names := []string{
		"lunbridge_commands_total", "lunbridge_bytes_total", "lunbridge_in_flight_commands",
		"lunbridge_in_flight_commands_max", "lunbridge_size_bytes", "lunbridge_read_only",
		"lunbridge_state", "lunbridge_lun_info", "lunbridge_lun_uptime_seconds", "lunbridge_build_info",
		"lunbridge_inline_page_cache_reads_total", "lunbridge_inline_page_cache_misses_total",
		"lunbridge_ring_kicks_total", "lunbridge_ring_wakeups_total", "lunbridge_ring_handoffs_total",
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

func TestCollectorErrors(t *testing.T) {
	c := NewCollector(&fakeLUNs{luns: []bridge.LUNInfo{testLUN()}}, "")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	got := map[string]float64{}
	for _, m := range gather(t, reg, "lunbridge_errors_total") {
		got[label(m, "sense_key")] = m.GetCounter().GetValue()
	}
	if len(got) != 16 {
		t.Errorf("lunbridge_errors_total has %d sense keys, want all 16: %v", len(got), got)
	}
	for key, want := range map[string]float64{"medium_error": 2, "illegal_request": 7, "not_ready": 0, "0x0f": 0} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("lunbridge_errors_total{sense_key=%q} = %v (present %v), want %v", key, v, ok, want)
		}
	}
}

// TestHistogramBuckets fills bridge's histogram at random and checks every
// exposed cumulative bucket against a count made from bridge.BucketBound
// directly: observations in bridge buckets whose upper bound is at most le.
func TestHistogramBuckets(t *testing.T) {
	l := testLUN()
	r := rand.New(rand.NewPCG(1, 2))
	var total uint64
	for i := range l.Stats.Kinds[bridge.KindWrite].Latency {
		n := r.Uint64N(100)
		l.Stats.Kinds[bridge.KindWrite].Latency[i] = n
		total += n
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(&fakeLUNs{luns: []bridge.LUNInfo{l}}, ""))
	var h *dto.Histogram
	for _, m := range gather(t, reg, "lunbridge_command_duration_seconds") {
		if label(m, "kind") == "write" {
			h = m.GetHistogram()
		}
	}
	if h == nil {
		t.Fatal("no lunbridge_command_duration_seconds{kind=\"write\"}")
	}
	if h.GetSampleCount() != total {
		t.Errorf("_count = %d, want %d", h.GetSampleCount(), total)
	}
	if n := len(h.GetBucket()); n != 27 {
		t.Errorf("%d buckets, want 27 (2^10 ns to 2^36 ns)", n)
	}
	for _, b := range h.GetBucket() {
		le := b.GetUpperBound()
		var want uint64
		for i, n := range l.Stats.Kinds[bridge.KindWrite].Latency {
			if i < bridge.NumBuckets-1 && bridge.BucketBound(i).Seconds() <= le {
				want += n
			}
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%g: %d, want %d", le, b.GetCumulativeCount(), want)
		}
		if ns := uint64(le * 1e9); bits.OnesCount64(ns) != 1 {
			t.Errorf("bucket le=%g is not a power of two of nanoseconds", le)
		}
	}
}

// TestHistogramSum: the _sum series is bridge's exact LatencySum, not an
// estimate from the buckets.
func TestHistogramSum(t *testing.T) {
	l := testLUN()
	l.Stats.Kinds[bridge.KindRead].Latency[40] = 3
	l.Stats.Kinds[bridge.KindRead].LatencySum = 1234567 * time.Nanosecond
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(&fakeLUNs{luns: []bridge.LUNInfo{l}}, ""))
	for _, m := range gather(t, reg, "lunbridge_command_duration_seconds") {
		if label(m, "kind") != "read" {
			continue
		}
		if got, want := m.GetHistogram().GetSampleSum(), 0.001234567; got != want {
			t.Errorf("_sum = %g, want %g", got, want)
		}
		return
	}
	t.Fatal("no lunbridge_command_duration_seconds{kind=\"read\"}")
}

func TestCollectorLint(t *testing.T) {
	c := NewCollector(&fakeLUNs{luns: []bridge.LUNInfo{testLUN()}}, "v")
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestOneSnapshotPerScrape: a scrape lists the LUNs once, so all of a
// LUN's metrics come from the same moment.
func TestOneSnapshotPerScrape(t *testing.T) {
	f := &fakeLUNs{luns: []bridge.LUNInfo{testLUN(), testLUN()}}
	f.luns[1].Name = "disk1"
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(f, ""))
	if n := len(gather(t, reg, "lunbridge_commands_total")); n != 2*bridge.NumKinds {
		t.Errorf("%d lunbridge_commands_total series, want %d", n, 2*bridge.NumKinds)
	}
	if f.calls != 1 {
		t.Errorf("List called %d times in one scrape, want 1", f.calls)
	}
}

func TestServer(t *testing.T) {
	s, err := Listen("127.0.0.1:0", &fakeLUNs{luns: []bridge.LUNInfo{testLUN()}}, Options{Version: "9.9"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	resp, err := http.Get("http://" + s.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`lunbridge_build_info{version="9.9"} 1`,
		`lunbridge_bytes_total{kind="write",lun="disk0"} 8192`,
		`lunbridge_command_duration_seconds_bucket{kind="read",lun="disk0",le="+Inf"} 0`,
		"go_goroutines ",
		"process_open_fds ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET /metrics lacks %q", want)
		}
	}
	if resp, err := http.Post("http://"+s.Addr().String()+"/metrics", "text/plain", nil); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST /metrics: %s, want 405", resp.Status)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := http.Get("http://" + s.Addr().String() + "/metrics"); err == nil {
		t.Error("the server still answers after Run returned")
	}
}

func TestListenError(t *testing.T) {
	if _, err := Listen("127.0.0.1:-1", &fakeLUNs{}, Options{}); err == nil || !strings.HasPrefix(err.Error(), "metrics: ") {
		t.Errorf("Listen(bad port) = %v, want a metrics: error", err)
	}
}

func gather(t *testing.T, g prometheus.Gatherer, name string) []*dto.Metric {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// BenchmarkCollect measures one scrape's collection for 16 LUNs.
func BenchmarkCollect(b *testing.B) {
	luns := make([]bridge.LUNInfo, 16)
	for i := range luns {
		luns[i] = testLUN()
		luns[i].Name = fmt.Sprintf("disk%d", i)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(&fakeLUNs{luns: luns}, ""))
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
