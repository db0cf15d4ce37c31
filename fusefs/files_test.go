// SPDX-License-Identifier: Apache-2.0

package fusefs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/bridge"
)

// TestParse checks every file's grammar: the canonical command for valid
// lines, ErrInvalid (and no command) for everything else.
func TestParse(t *testing.T) {
	lun := &bridge.LUNInfo{Name: "d0", Size: 1 << 30}
	for _, tc := range []struct {
		file string
		line string
		want string // "!": ErrInvalid
	}{
		{"state", "online", "online"},
		{"state", "offline", "offline"},
		{"state", "failed", "!"},
		{"state", "Offline", "!"},
		{"state", "offline extra", "!"},
		{"state", "0", "!"},
		{"read_only", "1", "read-only 1"},
		{"read_only", "0", "read-only 0"},
		{"read_only", "true", "!"},
		{"read_only", "01", "!"},
		{"read_only", "1 1", "!"},
		{"size", "2G", "resize 2147483648"},
		{"size", "2147483648", "resize 2147483648"},
		{"size", "1G", ""}, // the current size: nothing to do
		{"size", "1073741824", ""},
		{"size", "512M", "!"}, // shrinking
		{"size", "0", "!"},
		{"size", "-2G", "!"},
		{"size", "2X", "!"},
		{"size", "2G 3G", "!"},
		{"size", "99999999999P", "!"},
		{"ctl", "flush", "flush"},
		{"ctl", "reset-stats", "reset-stats"},
		{"ctl", "reset_stats", "!"},
		{"ctl", "flush now", "!"},
		{"luns", "remove d0", "remove d0"},
		{"luns", "remove", "!"},
		{"luns", "remove d0 d1", "!"},
		{"luns", "remove ..", "!"},
		{"luns", "remove luns", "!"},
		{"luns", "export d1 /img", "export d1 /img"},
		{"luns", "export d1 /img fabric=iscsi write-through=1 read-only=0 block-size=4096 size=1M",
			"export d1 /img size=1048576 block-size=4096 read-only=0 fabric=iscsi write-through=1"},
		{"luns", "export d1 /img size=10G", "export d1 /img size=10737418240"},
		{"luns", "export d1 img", "!"}, // relative path
		{"luns", "export d1 ./img", "!"},
		{"luns", "export d1", "!"},
		{"luns", "export version /img", "!"},
		{"luns", "export a/b /img", "!"},
		{"luns", "export d1 /img size=1G size=2G", "!"},
		{"luns", "export d1 /img size", "!"},
		{"luns", "export d1 /img size=", "!"},
		{"luns", "export d1 /img colour=red", "!"},
		{"luns", "export d1 /img block-size=1024", "!"},
		{"luns", "export d1 /img fabric=nvme", "!"},
		{"luns", "export d1 /img fabric=none", "export d1 /img fabric=none"},
		{"luns", "export -d1 /img", "!"},
		{"luns", "export d:1 /img", "!"},
		{"luns", "export d1 /img read-only=yes", "!"},
		{"luns", "add d1 /img", "!"},
		{"luns", "EXPORT d1 /img", "!"},
		{"luns", "export luns /img", "!"},
		{"luns", "online", "!"},
		{"state", "flush", "!"},
		{"state", "online\n", "online"},
		{"read_only", "1\n", "read-only 1"},
		{"read_only", "", "!"},
		{"read_only", "\n", "!"},
		{"read_only", " 1", "!"},
		{"size", "2G\n", "resize 2147483648"},
		{"ctl", "remove d0", "!"},
	} {
		t.Run(tc.file+"/"+tc.line, func(t *testing.T) {
			spec := findSpec(lunFiles, tc.file)
			if spec == nil {
				spec = findSpec(rootFiles, tc.file)
			}
			got, err := spec.parse(tc.line, lun)
			if tc.want == "!" {
				if !errors.Is(err, bridge.ErrInvalid) || got != "" {
					t.Errorf("parse %s %q = %q, %v, want ErrInvalid", tc.file, tc.line, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("parse %s %q = %q, %v, want %q", tc.file, tc.line, got, err, tc.want)
			}
		})
	}
}

func TestModeBits(t *testing.T) {
	want := map[string]uint32{
		"version": 0o444, "luns": 0o644,
		"info": 0o444, "stats": 0o444, "stats.json": 0o444, "latency": 0o444,
		"state": 0o644, "read_only": 0o644, "size": 0o644, "ctl": 0o200,
	}
	for _, s := range append(append([]*fileSpec{}, rootFiles...), lunFiles...) {
		if s.mode != want[s.name] {
			t.Errorf("mode of %s = %#o, want %#o", s.name, s.mode, want[s.name])
		}
		delete(want, s.name)
	}
	if len(want) != 0 {
		t.Errorf("files missing from the view: %v", want)
	}
}

func TestErrno(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{fmt.Errorf("export x: %w", bridge.ErrInvalid), syscall.EINVAL},
		{fmt.Errorf("lun x: %w", bridge.ErrNotFound), syscall.ENOENT},
		{fmt.Errorf("lun x: %w", bridge.ErrExists), syscall.EEXIST},
		{fmt.Errorf("open: %w", &fs.PathError{Op: "open", Path: "/x", Err: syscall.EACCES}), syscall.EACCES},
		{fmt.Errorf("lun x: %w", bridge.ErrClosed), syscall.EIO},
		{errors.New("disk on fire"), syscall.EIO},
	} {
		if got := errno(tc.err); got != tc.want {
			t.Errorf("errno(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// testLUN returns a LUN whose counters are all distinct, so a key that
// shows the wrong counter is caught.
func testLUN(name string) bridge.LUNInfo {
	l := bridge.LUNInfo{
		Name: name, Path: "/srv/" + name + ".img", Size: 1 << 30, BlockSize: 512,
		Serial: "ser-" + name, NAA: "6001405abcdef012", UIO: "/dev/uio3",
		Fabric: "loop", FabricPath: "/dev/sdb", State: bridge.StateOnline, WriteCache: true,
	}
	s := &l.Stats
	for k := range s.Kinds {
		s.Kinds[k].Ops = uint64(100*k + 1)
		s.Kinds[k].Bytes = uint64(100*k + 2)
		s.Kinds[k].Errors = uint64(100*k + 3)
	}
	for i := range s.SenseKeyErrors {
		s.SenseKeyErrors[i] = uint64(1000 + i)
	}
	s.InFlight, s.InFlightMax, s.Uptime = 7, 9, 90*time.Second+500*time.Millisecond
	s.NowaitReads, s.NowaitFallbacks = 11, 12
	s.RingKicks, s.RingWakeups, s.RingHandoffs = 13, 14, 15
	return l
}

// parseStats reads "key value" lines.
func parseStats(t *testing.T, text string) (keys []string, vals map[string]uint64) {
	t.Helper()
	vals = make(map[string]uint64)
	for line := range strings.Lines(text) {
		k, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		n, err := strconv.ParseUint(v, 10, 64)
		if !ok || err != nil {
			t.Fatalf("stats line %q is not \"key value\"", line)
		}
		if _, dup := vals[k]; dup {
			t.Fatalf("stats key %q twice", k)
		}
		keys = append(keys, k)
		vals[k] = n
	}
	return keys, vals
}

func TestRenderStats(t *testing.T) {
	l := testLUN("d0")
	keys, vals := parseStats(t, string(renderStats(nil, nil, &l)))
	for k, want := range map[string]uint64{
		"read_ops": 1, "read_bytes": 2, "read_errors": 3,
		"write_ops": 101, "sync_errors": 203, "unmap_bytes": 302,
		"write_same_ops": 401, "compare_and_write_errors": 503, "other_ops": 601,
		"total_ops":       1 + 101 + 201 + 301 + 401 + 501 + 601,
		"errors_no_sense": 1000, "errors_medium_error": 1003, "errors_illegal_request": 1005,
		"errors_0x0c": 1012, "errors_miscompare": 1014, "errors_0x0f": 1015,
		"in_flight": 7, "in_flight_max": 9, "uptime_seconds": 90,
		"inline_page_cache_reads": 11, "inline_page_cache_misses": 12,
		"ring_kicks": 13, "ring_wakeups": 14, "ring_handoffs": 15,
	} {
		if got, ok := vals[k]; !ok || got != want {
			t.Errorf("stats %s = %d (present %v), want %d", k, got, ok, want)
		}
	}
	if n := 3*bridge.NumKinds + 3 + 16 + 8; len(keys) != n {
		t.Errorf("stats has %d keys, want %d", len(keys), n)
	}

	// stats.json holds the same counters in the same order.
	js := renderStatsJSON(nil, nil, &l)
	var m map[string]uint64
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatalf("stats.json: %v\n%s", err, js)
	}
	if len(m) != len(vals) {
		t.Errorf("stats.json has %d keys, stats %d", len(m), len(vals))
	}
	for k, v := range vals {
		if m[k] != v {
			t.Errorf("stats.json %s = %d, stats says %d", k, m[k], v)
		}
	}
	dec := json.NewDecoder(strings.NewReader(string(js)))
	dec.Token() // {
	for i := 0; dec.More(); i++ {
		tok, _ := dec.Token()
		var n uint64
		dec.Decode(&n)
		if tok != keys[i] {
			t.Fatalf("stats.json key %d = %v, stats has %q", i, tok, keys[i])
		}
	}
}

func TestRenderLatency(t *testing.T) {
	var l bridge.LUNInfo
	h := &l.Stats.Kinds[bridge.KindWrite].Latency
	h[0] = 1    // < 1.024µs
	h[10] = 998 // one bucket
	h[bridge.NumBuckets-1] = 1
	out := string(renderLatency(nil, nil, &l))
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != bridge.NumKinds+3 {
		t.Fatalf("latency has %d lines, want %d:\n%s", len(lines), bridge.NumKinds+3, out)
	}
	us := func(i int) string {
		return strconv.FormatFloat(float64(bridge.BucketBound(i))/1e3, 'f', -1, 64)
	}
	for _, want := range []string{
		"read count=0 p50_us=0 p90_us=0 p99_us=0 p999_us=0",
		fmt.Sprintf("write count=1000 p50_us=%s p90_us=%[1]s p99_us=%[1]s p999_us=%[1]s", us(10)),
		"write lt_us=1.024 count=1",
		fmt.Sprintf("write lt_us=%s count=998", us(10)),
		"write lt_us=inf count=1",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("latency lacks line %q:\n%s", want, out)
		}
	}
	// p999 of 1000 observations with one beyond the range is still bucket
	// 10; with two it is the overflow bucket.
	h[bridge.NumBuckets-1] = 2
	h[10] = 997
	if out := string(renderLatency(nil, nil, &l)); !strings.Contains(out, "p999_us=inf\n") {
		t.Errorf("latency p999 with 2/1000 overflowing:\n%s", out)
	}
}

func TestRenderInfoAndLUNs(t *testing.T) {
	l := testLUN("d0")
	l.UIO = ""
	got := string(renderInfo(nil, nil, &l))
	want := `name d0
path /srv/d0.img
size 1073741824
block_size 512
serial ser-d0
naa 6001405abcdef012
uio -
fabric loop
fabric_path /dev/sdb
state online
reason -
read_only 0
write_cache write-back
`
	if got != want {
		t.Errorf("info =\n%s\nwant\n%s", got, want)
	}

	l2 := testLUN("d1")
	l2.Fabric, l2.ReadOnly, l2.WriteCache, l2.BlockSize = "", true, false, 4096
	got = string(renderLUNs(nil, []bridge.LUNInfo{l, l2}, nil))
	want = "d0 /srv/d0.img size=1073741824 block-size=512 read-only=0 fabric=loop write-through=0\n" +
		"d1 /srv/d1.img size=1073741824 block-size=4096 read-only=1 fabric=none write-through=1\n"
	if got != want {
		t.Errorf("luns =\n%s\nwant\n%s", got, want)
	}
	// Each line, prefixed with "export", parses back to the same LUN.
	for line := range strings.Lines(got) {
		if cmd, err := parseLUNs("export "+line, nil); err != nil || cmd != "export "+strings.TrimSuffix(line, "\n") {
			t.Errorf("parseLUNs(export %q) = %q, %v", line, cmd, err)
		}
	}
}
