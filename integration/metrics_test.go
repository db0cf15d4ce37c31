// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestPrometheusExamples checks the shipped scrape config and alerting rules
// with Debian's promtool, and runs the rules' unit tests
// (testdata/metrics_alerts_test.yml: each alert fires on the series
// lunbridge exports, and stays quiet on a healthy LUN). No guest: it runs
// whenever promtool is there; without it, it skips, or fails under
// LUNBRIDGE_INTEGRATION=require.
func TestPrometheusExamples(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if vmtest.Mode() == "require" {
			t.Fatalf("promtool: %v (Debian package prometheus; scripts/install-deps.sh)", err)
		}
		t.Skipf("promtool: %v (Debian package prometheus)", err)
	}
	root, err := vmtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"check", "config", "examples/prometheus.yml"},
		{"check", "rules", "examples/alerts.yml"},
		{"test", "rules", "integration/testdata/metrics_alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestPrometheusScrape: a real Prometheus server (Debian's, run in the guest
// through hostrun) scrapes "lunbridge serve" (metrics key of its config)
// every second while fio writes 24 MiB at 4 MiB/s through the kernel to the
// LUN, after one READ(16) past the end. The bytes, commands, errors by
// sense key and histogram count Prometheus stored equal the FUSE view's
// counters and what fio wrote; the peak write rate Prometheus computes
// agrees with fio's bandwidth; the gauges and the process collector are
// there.
func TestPrometheusScrape(t *testing.T) {
	vmtest.RequireTools(t, "prometheus", "curl", "fio", "sg_raw")
	res := vmtest.Run(t, vmtest.Options{
		Files:  map[string]string{"lunbridge": vmtest.BuildLunbridge(t)},
		Script: lunbridgeLib + scenario("metrics_scrape"),
	})
	share := res.ShareDir

	var fio struct {
		Jobs []struct {
			Write struct {
				IOBytes  uint64 `json:"io_bytes"`
				BW       uint64 `json:"bw_bytes"`
				TotalIOs uint64 `json:"total_ios"`
			} `json:"write"`
		} `json:"jobs"`
	}
	readJSON(t, filepath.Join(share, "fio.json"), &fio)
	if len(fio.Jobs) != 1 || fio.Jobs[0].Write.IOBytes != 24<<20 {
		t.Fatalf("fio wrote %+v, want one job of %d bytes", fio, 24<<20)
	}
	wrote := fio.Jobs[0].Write

	stats := map[string]uint64{}
	b, err := os.ReadFile(filepath.Join(share, "stats.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(line, " ")
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("stats line %q: %v", line, err)
		}
		stats[k] = n
	}
	if stats["write_bytes"] != wrote.IOBytes {
		t.Errorf("view write_bytes = %d, want what fio wrote, %d", stats["write_bytes"], wrote.IOBytes)
	}

	byKind := func(file string) map[string]float64 {
		m := map[string]float64{}
		for _, s := range promQuery(t, share, file) {
			m[s.Metric["kind"]] = s.value(t)
		}
		return m
	}
	bytes, commands := byKind("bytes.json"), byKind("commands.json")
	for _, kind := range []string{"read", "write", "sync", "unmap", "write_same", "compare_and_write", "other"} {
		for _, c := range []struct {
			metric string
			got    map[string]float64
			key    string
		}{
			{"lunbridge_bytes_total", bytes, kind + "_bytes"},
			{"lunbridge_commands_total", commands, kind + "_ops"},
		} {
			got, ok := c.got[kind]
			if !ok || got != float64(stats[c.key]) {
				t.Errorf("Prometheus %s{kind=%q} = %v (present %v), view %s = %d",
					c.metric, kind, got, ok, c.key, stats[c.key])
			}
		}
	}
	if got := commands["write"]; got < float64(wrote.TotalIOs) {
		t.Errorf("Prometheus write commands = %v, fio issued %d", got, wrote.TotalIOs)
	}
	if got := one(t, share, "count.json"); got != float64(stats["write_ops"]) {
		t.Errorf("Prometheus write histogram _count = %v, view write_ops = %d", got, stats["write_ops"])
	}
	if got := one(t, share, "errors.json"); got != float64(stats["total_errors"]) {
		t.Errorf("Prometheus sum(lunbridge_errors_total) = %v, view total_errors = %d", got, stats["total_errors"])
	}
	if got := one(t, share, "illegal.json"); got < 1 || got != float64(stats["errors_illegal_request"]) {
		t.Errorf("Prometheus lunbridge_errors_total{sense_key=\"illegal_request\"} = %v, view errors_illegal_request = %d; want them equal and at least 1 (the READ past the end)",
			got, stats["errors_illegal_request"])
	}
	// fio paces itself to 4 MiB/s; Prometheus' rate over 4 s windows of
	// 1 s scrapes peaks near fio's own average bandwidth.
	if got, want := one(t, share, "rate.json"), float64(wrote.BW); got < 0.5*want || got > 2*want {
		t.Errorf("Prometheus peak write rate = %.0f B/s, fio's bandwidth %.0f B/s: want within 0.5x..2x", got, want)
	} else {
		t.Logf("peak write rate from Prometheus %.0f B/s, fio's bandwidth %.0f B/s", got, want)
	}
	if p99 := one(t, share, "p99.json"); !(p99 > 0 && p99 < 30) {
		t.Errorf("p99 write latency from the histogram = %v s, want between 0 and 30", p99)
	}
	if got := one(t, share, "inflight.json"); got < 1 || got != float64(stats["in_flight_max"]) {
		t.Errorf("Prometheus lunbridge_in_flight_commands_max = %v, view in_flight_max = %d; want them equal and at least 1",
			got, stats["in_flight_max"])
	}
	// The ring's kicks on the real kernel: each hands back at least one
	// command, and every command went back by one.
	if got := one(t, share, "kicks.json"); got < 1 || got != float64(stats["ring_kicks"]) || got > float64(stats["total_ops"]) {
		t.Errorf("Prometheus lunbridge_ring_kicks_total = %v, view ring_kicks = %d, total_ops %d; want them equal, between 1 and total_ops",
			got, stats["ring_kicks"], stats["total_ops"])
	}
	for file, want := range map[string]float64{"state.json": 1, "size.json": 64 << 20} {
		if got := one(t, share, file); got != want {
			t.Errorf("%s = %v, want %v", file, got, want)
		}
	}
	if got := one(t, share, "process.json"); got <= 0 {
		t.Errorf("process_resident_memory_bytes = %v, want > 0", got)
	}
}

// promSample is one element of an instant query's vector result.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"` // [unix time, "value"]
}

func (s promSample) value(t *testing.T) float64 {
	t.Helper()
	str, ok := s.Value[1].(string)
	if !ok {
		t.Fatalf("sample value %v is not a string", s.Value[1])
	}
	v, err := strconv.ParseFloat(str, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// promQuery reads the answer of Prometheus' /api/v1/query that the guest
// saved in file.
func promQuery(t *testing.T, share, file string) []promSample {
	t.Helper()
	var r struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string       `json:"resultType"`
			Result     []promSample `json:"result"`
		} `json:"data"`
	}
	readJSON(t, filepath.Join(share, file), &r)
	if r.Status != "success" || r.Data.ResultType != "vector" {
		t.Fatalf("%s: status %q, result type %q", file, r.Status, r.Data.ResultType)
	}
	return r.Data.Result
}

// one is the value of a query with exactly one sample.
func one(t *testing.T, share, file string) float64 {
	t.Helper()
	r := promQuery(t, share, file)
	if len(r) != 1 {
		t.Fatalf("%s: %d samples, want 1: %+v", file, len(r), r)
	}
	return r[0].value(t)
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			t.Fatalf("%s: %v\n%s", path, err, b)
		}
		t.Fatalf("%s: %v", path, err)
	}
}
