// SPDX-License-Identifier: Apache-2.0

package fusefs

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lunbridge/lunbridge/bridge"
)

// fileSpec describes one file of the view: its name, its permission bits,
// how to render its content (nil: write-only) and how to parse a command
// written to it (nil: read-only). The mode bits are derived from the two, so
// they cannot lie.
type fileSpec struct {
	name string
	mode uint32
	// render returns the content of the file for lun (nil at the root),
	// given the whole list.
	render func(v *View, list []bridge.LUNInfo, lun *bridge.LUNInfo) []byte
	// parse turns one written line into a canonical command for
	// LUNs.Control (bridge.ParseControl's grammar), or "" when there is
	// nothing to do. Its errors wrap bridge.ErrInvalid. lun is nil at the
	// root.
	parse func(line string, lun *bridge.LUNInfo) (string, error)
}

func newSpec(name string,
	render func(*View, []bridge.LUNInfo, *bridge.LUNInfo) []byte,
	parse func(string, *bridge.LUNInfo) (string, error)) *fileSpec {
	var mode uint32
	if render != nil {
		mode |= 0o444
	}
	if parse != nil {
		mode |= 0o200
	}
	return &fileSpec{name: name, mode: mode, render: render, parse: parse}
}

// Names of the files at the root; no LUN may have them.
const (
	versionName = "version"
	lunsName    = "luns"
)

// ReservedName reports whether name is taken by a file at the root of the
// view, and so cannot name a LUN while the view is mounted.
func ReservedName(name string) bool { return name == versionName || name == lunsName }

// rootFiles are the files at the root of the view.
var rootFiles = []*fileSpec{
	newSpec(versionName, renderVersion, nil),
	newSpec(lunsName, renderLUNs, parseLUNs),
}

// lunFiles are the files in each LUN's directory, in listing order.
var lunFiles = []*fileSpec{
	newSpec("info", renderInfo, nil),
	newSpec("stats", renderStats, nil),
	newSpec("stats.json", renderStatsJSON, nil),
	newSpec("latency", renderLatency, nil),
	newSpec("state", renderState, parseState),
	newSpec("read_only", renderReadOnly, parseReadOnly),
	newSpec("size", renderSize, parseSize),
	newSpec("ctl", nil, parseCtl),
}

func findSpec(specs []*fileSpec, name string) *fileSpec {
	for _, s := range specs {
		if s.name == name {
			return s
		}
	}
	return nil
}

// invalid returns an error wrapping bridge.ErrInvalid.
func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, bridge.ErrInvalid)...)
}

func errNoLUN(name string) error {
	return fmt.Errorf("lun %q: %w", name, bridge.ErrNotFound)
}

// command parses a line with bridge's grammar and accepts only the verbs
// the file takes.
func command(line string, ops ...bridge.Op) (bridge.Control, error) {
	c, err := bridge.ParseControl(line)
	if err != nil {
		return c, err
	}
	for _, op := range ops {
		if c.Op == op {
			return c, nil
		}
	}
	var want []string
	for _, op := range ops {
		want = append(want, string(op))
	}
	return bridge.Control{}, invalid("%q: want %s", c.String(), strings.Join(want, " or "))
}

// argument parses what a file that stands for one verb takes: the verb's
// arguments, as in "VERB ARGS".
func argument(op bridge.Op, line string) (bridge.Control, error) {
	if line == "" || line == "\n" {
		return bridge.Control{}, invalid("empty command")
	}
	return command(string(op)+" "+line, op)
}

func boolDigit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func renderVersion(v *View, _ []bridge.LUNInfo, _ *bridge.LUNInfo) []byte {
	return []byte(v.opts.Version + "\n")
}

// renderLUNs lists the LUNs, one per line, as the arguments of the export
// command that recreates each: "NAME PATH size=BYTES block-size=N
// read-only=0|1 fabric=loop|iscsi|none write-through=0|1".
func renderLUNs(_ *View, list []bridge.LUNInfo, _ *bridge.LUNInfo) []byte {
	var b strings.Builder
	for _, l := range list {
		fmt.Fprintf(&b, "%s %s size=%d block-size=%d read-only=%s", l.Name, l.Path, l.Size, l.BlockSize, boolDigit(l.ReadOnly))
		fabric := l.Fabric
		if fabric == "" {
			fabric = "none"
		}
		fmt.Fprintf(&b, " fabric=%s write-through=%s\n", fabric, boolDigit(!l.WriteCache))
	}
	return []byte(b.String())
}

// parseLUNs parses a line written to /luns: export or remove (see
// bridge.ParseControl), of a name the view does not reserve.
func parseLUNs(line string, _ *bridge.LUNInfo) (string, error) {
	c, err := command(line, bridge.OpExport, bridge.OpRemove)
	if err != nil {
		return "", err
	}
	if ReservedName(c.Name) {
		return "", invalid("LUN name %q is reserved by the FUSE view", c.Name)
	}
	return c.String(), nil
}

// renderInfo shows a LUN's identity and configuration, one "key value" pair
// per line; an empty value is shown as "-".
func renderInfo(_ *View, _ []bridge.LUNInfo, l *bridge.LUNInfo) []byte {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	cache := "write-through"
	if l.WriteCache {
		cache = "write-back"
	}
	var b strings.Builder
	for _, kv := range [][2]string{
		{"name", l.Name},
		{"path", l.Path},
		{"size", strconv.FormatInt(l.Size, 10)},
		{"block_size", strconv.FormatUint(uint64(l.BlockSize), 10)},
		{"serial", dash(l.Serial)},
		{"naa", dash(l.NAA)},
		{"uio", dash(l.UIO)},
		{"fabric", dash(l.Fabric)},
		{"fabric_path", dash(l.FabricPath)},
		{"state", l.State.String()},
		{"reason", dash(l.Reason)},
		{"read_only", boolDigit(l.ReadOnly)},
		{"write_cache", cache},
	} {
		b.WriteString(kv[0] + " " + kv[1] + "\n")
	}
	if g := l.Gateway; g != nil {
		// One of several gateways of a shared file (docs/scale-out.md).
		owner := "-"
		if g.OwnerKnown {
			owner = strconv.FormatUint(uint64(g.OwnerGroup), 10)
		}
		fmt.Fprintf(&b, "alua_group %d\nalua_state %s\nowner %s\nowner_group %s\nepoch %d\n",
			g.Group, strings.ReplaceAll(g.State.String(), "/", "_"), boolDigit(g.Owner), owner, g.Epoch)
	}
	return []byte(b.String())
}

// senseKeyNames name the sense keys in stats keys (SPC-4 table 48,
// "Sense key descriptions"); the reserved ones go by their hex value.
var senseKeyNames = [16]string{
	"no_sense", "recovered_error", "not_ready", "medium_error",
	"hardware_error", "illegal_request", "unit_attention", "data_protect",
	"blank_check", "vendor_specific", "copy_aborted", "aborted_command",
	"0x0c", "volume_overflow", "miscompare", "0x0f",
}

// stat is one counter of the stats files.
type stat struct {
	key string
	val uint64
}

// statList flattens s into the counters of the stats files, always the same
// keys in the same order, so scripts can rely on them.
func statList(s *bridge.Stats) []stat {
	out := make([]stat, 0, 3*bridge.NumKinds+3+16+8)
	for k := range bridge.NumKinds {
		ks := &s.Kinds[k]
		name := bridge.Kind(k).String()
		out = append(out,
			stat{name + "_ops", ks.Ops},
			stat{name + "_bytes", ks.Bytes},
			stat{name + "_errors", ks.Errors})
	}
	ops, bytes, errs := s.Total()
	out = append(out, stat{"total_ops", ops}, stat{"total_bytes", bytes}, stat{"total_errors", errs})
	for i, n := range s.SenseKeyErrors {
		out = append(out, stat{"errors_" + senseKeyNames[i], n})
	}
	return append(out,
		stat{"in_flight", s.InFlight},
		stat{"in_flight_max", s.InFlightMax},
		stat{"uptime_seconds", uint64(s.Uptime / time.Second)},
		stat{"inline_page_cache_reads", s.NowaitReads},
		stat{"inline_page_cache_misses", s.NowaitFallbacks},
		stat{"ring_kicks", s.RingKicks},
		stat{"ring_wakeups", s.RingWakeups},
		stat{"ring_handoffs", s.RingHandoffs})
}

func renderStats(_ *View, _ []bridge.LUNInfo, l *bridge.LUNInfo) []byte {
	var b []byte
	for _, s := range statList(&l.Stats) {
		b = append(b, s.key...)
		b = append(b, ' ')
		b = strconv.AppendUint(b, s.val, 10)
		b = append(b, '\n')
	}
	return b
}

// renderStatsJSON renders the counters of the stats file as one JSON
// object, in the same order. The keys are plain ASCII identifiers and the
// values unsigned integers, so no escaping is needed.
//
// Why by hand and not encoding/json (issue 15): json.Marshal of a map
// sorts the keys, losing the stats file's order, so encoding/json would
// still need the object built in order (json.Marshal per key, then
// json.Indent). That gives the same bytes (TestStatsJSONIsEncodingJSON
// checks it) at about three times the time and allocations: on the
// 2-core dev machine, `go test -run '^$' -bench StatsJSON -count 6
// ./fusefs/` and benchstat gave 4.4us, 5.1KiB, 48 allocs per render by
// hand; 15.0us, 7.4KiB, 167 allocs in order with encoding/json; 22.3us,
// 11.0KiB, 136 allocs over a map.
func renderStatsJSON(_ *View, _ []bridge.LUNInfo, l *bridge.LUNInfo) []byte {
	b := []byte("{\n")
	list := statList(&l.Stats)
	for i, s := range list {
		b = append(b, "  \""...)
		b = append(b, s.key...)
		b = append(b, "\": "...)
		b = strconv.AppendUint(b, s.val, 10)
		if i < len(list)-1 {
			b = append(b, ',')
		}
		b = append(b, '\n')
	}
	return append(b, "}\n"...)
}

// micros formats a bucket bound in microseconds; the unbounded last bucket
// is "inf".
func micros(d time.Duration) string {
	if d == bridge.BucketBound(bridge.NumBuckets-1) {
		return "inf"
	}
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', -1, 64)
}

// renderLatency shows, for every kind, the count and the 50th, 90th, 99th
// and 99.9th percentiles in microseconds, then one line per non-empty
// histogram bucket: "KIND lt_us=BOUND count=N", the number of commands
// that took less than BOUND (and at least the previous bucket's bound).
// Percentiles are bucket bounds: the true value is at most the one shown.
func renderLatency(_ *View, _ []bridge.LUNInfo, l *bridge.LUNInfo) []byte {
	var b strings.Builder
	for k := range bridge.NumKinds {
		h := &l.Stats.Kinds[k].Latency
		fmt.Fprintf(&b, "%s count=%d", bridge.Kind(k), h.Count())
		for _, q := range []struct {
			name string
			q    float64
		}{{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p999", 0.999}} {
			fmt.Fprintf(&b, " %s_us=%s", q.name, micros(h.Quantile(q.q)))
		}
		b.WriteByte('\n')
	}
	for k := range bridge.NumKinds {
		for i, n := range l.Stats.Kinds[k].Latency {
			if n != 0 {
				fmt.Fprintf(&b, "%s lt_us=%s count=%d\n", bridge.Kind(k), micros(bridge.BucketBound(i)), n)
			}
		}
	}
	return []byte(b.String())
}

func renderState(_ *View, _ []bridge.LUNInfo, l *bridge.LUNInfo) []byte {
	return []byte(l.State.String() + "\n")
}

// parseState accepts "online" or "offline"; "failed" is the bridge's to
// set.
func parseState(line string, _ *bridge.LUNInfo) (string, error) {
	c, err := command(line, bridge.OpOnline, bridge.OpOffline)
	if err != nil {
		return "", err
	}
	return c.String(), nil
}

func renderReadOnly(_ *View, _ []bridge.LUNInfo, l *bridge.LUNInfo) []byte {
	return []byte(boolDigit(l.ReadOnly) + "\n")
}

// parseReadOnly accepts 0 or 1: the argument of "read-only".
func parseReadOnly(line string, _ *bridge.LUNInfo) (string, error) {
	c, err := argument(bridge.OpReadOnly, line)
	if err != nil {
		return "", err
	}
	return c.String(), nil
}

func renderSize(_ *View, _ []bridge.LUNInfo, l *bridge.LUNInfo) []byte {
	return []byte(strconv.FormatInt(l.Size, 10) + "\n")
}

// parseSize accepts a new size (bridge.ParseSize syntax). Shrinking is
// refused: data past the new end would vanish under a mounted file
// system. Writing the current size is a no-op.
func parseSize(line string, l *bridge.LUNInfo) (string, error) {
	c, err := argument(bridge.OpResize, line)
	switch {
	case err != nil:
		return "", err
	case c.Size < l.Size:
		return "", invalid("size %d is smaller than the current %d: shrinking is refused", c.Size, l.Size)
	case c.Size == l.Size:
		return "", nil
	}
	return c.String(), nil
}

func parseCtl(line string, _ *bridge.LUNInfo) (string, error) {
	c, err := command(line, bridge.OpFlush, bridge.OpResetStats, bridge.OpSnapshot, bridge.OpDeleteSnapshot)
	if err != nil {
		return "", err
	}
	return c.String(), nil
}
