package fusefs

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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
	// parse turns the fields of one written line into a canonical command
	// for LUNs.Control, or "" when there is nothing to do. Its errors wrap
	// bridge.ErrInvalid. lun is nil at the root.
	parse func(fields []string, lun *bridge.LUNInfo) (string, error)
}

func newSpec(name string,
	render func(*View, []bridge.LUNInfo, *bridge.LUNInfo) []byte,
	parse func([]string, *bridge.LUNInfo) (string, error)) *fileSpec {
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

// maxLine bounds a command line; a path is at most PATH_MAX (4096) bytes.
const maxLine = 8192

// invalid returns an error wrapping bridge.ErrInvalid.
func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, bridge.ErrInvalid)...)
}

func errNoLUN(name string) error {
	return fmt.Errorf("lun %q: %w", name, bridge.ErrNotFound)
}

// oneLine splits the data of one write(2) into the fields of one command
// line. The grammar is strict so that a typo never does something else:
// one optional trailing newline, no other control characters, valid UTF-8,
// fields separated by exactly one space.
func oneLine(data []byte) ([]string, error) {
	line := strings.TrimSuffix(string(data), "\n")
	switch {
	case line == "":
		return nil, invalid("empty command")
	case len(line) > maxLine:
		return nil, invalid("command longer than %d bytes", maxLine)
	case !utf8.ValidString(line):
		return nil, invalid("command is not UTF-8")
	}
	for _, r := range line {
		if r < 0x20 || r == 0x7f {
			return nil, invalid("control character %q in command (one line per write)", r)
		}
	}
	fields := strings.Split(line, " ")
	for _, f := range fields {
		if f == "" {
			return nil, invalid("empty field in %q (separate fields by one space)", line)
		}
	}
	return fields, nil
}

// oneWord accepts a single field from words and returns it.
func oneWord(fields []string, words ...string) (string, error) {
	if len(fields) == 1 {
		for _, w := range words {
			if fields[0] == w {
				return w, nil
			}
		}
	}
	return "", invalid("%q: want one of %s", strings.Join(fields, " "), strings.Join(words, ", "))
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

// exportKeys are the options of the export command, in canonical order,
// with their validators.
var exportKeys = []struct {
	key   string
	check func(string) (string, error)
}{
	{"size", func(s string) (string, error) {
		n, err := bridge.ParseSize(s)
		if err != nil {
			return "", err
		}
		return strconv.FormatInt(n, 10), nil
	}},
	{"block-size", oneOf("512", "4096")},
	{"read-only", oneOf("0", "1")},
	{"fabric", oneOf("loop", "iscsi", "none")},
	{"write-through", oneOf("0", "1")},
}

func oneOf(values ...string) func(string) (string, error) {
	return func(s string) (string, error) {
		for _, v := range values {
			if s == v {
				return s, nil
			}
		}
		return "", invalid("%q: want one of %s", s, strings.Join(values, ", "))
	}
}

// checkName accepts a LUN name the daemon accepts (bridge.ValidName) that
// does not hide a file at the root of the view.
func checkName(name string) error {
	if name == versionName || name == lunsName {
		return invalid("LUN name %q is reserved by the FUSE view", name)
	}
	return bridge.ValidName(name)
}

// parseLUNs parses a line written to /luns:
//
//	export NAME PATH [size=SIZE] [block-size=512|4096] [read-only=0|1] [fabric=loop|iscsi|none] [write-through=0|1]
//	remove NAME
//
// PATH must be absolute: the daemon's working directory is not the
// writer's. Options may come in any order, each at most once; the canonical
// command has them in the order above, with SIZE in bytes.
func parseLUNs(fields []string, _ *bridge.LUNInfo) (string, error) {
	switch fields[0] {
	case "remove":
		if len(fields) != 2 {
			return "", invalid("want: remove NAME")
		}
		if err := checkName(fields[1]); err != nil {
			return "", err
		}
		return "remove " + fields[1], nil
	case "export":
	default:
		return "", invalid("unknown command %q: want export or remove", fields[0])
	}
	if len(fields) < 3 {
		return "", invalid("want: export NAME PATH [key=value ...]")
	}
	name, path := fields[1], fields[2]
	if err := checkName(name); err != nil {
		return "", err
	}
	if !filepath.IsAbs(path) {
		return "", invalid("backing path %q is not absolute", path)
	}
	values := make(map[string]string)
	for _, opt := range fields[3:] {
		key, val, ok := strings.Cut(opt, "=")
		if !ok {
			return "", invalid("option %q: want key=value", opt)
		}
		if _, dup := values[key]; dup {
			return "", invalid("option %q given twice", key)
		}
		known := false
		for _, k := range exportKeys {
			if k.key != key {
				continue
			}
			known = true
			canon, err := k.check(val)
			if err != nil {
				return "", fmt.Errorf("option %s: %w", key, err)
			}
			values[key] = canon
		}
		if !known {
			return "", invalid("unknown option %q", key)
		}
	}
	cmd := "export " + name + " " + path
	for _, k := range exportKeys {
		if val, ok := values[k.key]; ok {
			cmd += " " + k.key + "=" + val
		}
	}
	return cmd, nil
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
	out := make([]stat, 0, 3*bridge.NumKinds+3+16+3)
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
		stat{"uptime_seconds", uint64(s.Uptime / time.Second)})
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
func parseState(fields []string, _ *bridge.LUNInfo) (string, error) {
	return oneWord(fields, "online", "offline")
}

func renderReadOnly(_ *View, _ []bridge.LUNInfo, l *bridge.LUNInfo) []byte {
	return []byte(boolDigit(l.ReadOnly) + "\n")
}

func parseReadOnly(fields []string, _ *bridge.LUNInfo) (string, error) {
	w, err := oneWord(fields, "0", "1")
	if err != nil {
		return "", err
	}
	return "read-only " + w, nil
}

func renderSize(_ *View, _ []bridge.LUNInfo, l *bridge.LUNInfo) []byte {
	return []byte(strconv.FormatInt(l.Size, 10) + "\n")
}

// parseSize accepts a new size (bridge.ParseSize syntax). Shrinking is
// refused: data past the new end would vanish under a mounted file
// system. Writing the current size is a no-op.
func parseSize(fields []string, l *bridge.LUNInfo) (string, error) {
	if len(fields) != 1 {
		return "", invalid("%q: want one size", strings.Join(fields, " "))
	}
	n, err := bridge.ParseSize(fields[0])
	switch {
	case err != nil:
		return "", err
	case n < l.Size:
		return "", invalid("size %d is smaller than the current %d: shrinking is refused", n, l.Size)
	case n == l.Size:
		return "", nil
	}
	return "resize " + strconv.FormatInt(n, 10), nil
}

func parseCtl(fields []string, _ *bridge.LUNInfo) (string, error) {
	return oneWord(fields, "flush", "reset-stats")
}
