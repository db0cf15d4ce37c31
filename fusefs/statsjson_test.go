// SPDX-License-Identifier: Apache-2.0

package fusefs

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
)

// statsJSONStd is stats.json as encoding/json writes it: keys quoted by
// json.Marshal, layout by json.Indent. The order of statList is kept (a
// map would sort the keys), so the object is built in order and then
// indented. It is the reference renderStatsJSON is checked and measured
// against (TestStatsJSONIsEncodingJSON, BenchmarkStatsJSON).
func statsJSONStd(list []stat) ([]byte, error) {
	var compact bytes.Buffer
	compact.WriteByte('{')
	for i, s := range list {
		if i > 0 {
			compact.WriteByte(',')
		}
		k, err := json.Marshal(s.key)
		if err != nil {
			return nil, err
		}
		compact.Write(k)
		compact.WriteByte(':')
		compact.WriteString(strconv.FormatUint(s.val, 10))
	}
	compact.WriteByte('}')
	var out bytes.Buffer
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// TestStatsJSONIsEncodingJSON: the hand-built stats.json is byte for byte
// what encoding/json writes for the same keys, values and order.
func TestStatsJSONIsEncodingJSON(t *testing.T) {
	l := testLUN("d0")
	want, err := statsJSONStd(statList(&l.Stats))
	if err != nil {
		t.Fatal(err)
	}
	if got := renderStatsJSON(nil, nil, &l); !bytes.Equal(got, want) {
		t.Errorf("renderStatsJSON =\n%s\nencoding/json writes\n%s", got, want)
	}
}

// BenchmarkStatsJSON renders one LUN's stats.json: by hand (what the view
// serves), with encoding/json in statList's order, and with encoding/json
// over a map (sorted keys, not the stats file's order).
func BenchmarkStatsJSON(b *testing.B) {
	l := testLUN("d0")
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			renderStatsJSON(nil, nil, &l)
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := statsJSONStd(statList(&l.Stats)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json_map", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := map[string]uint64{}
			for _, s := range statList(&l.Stats) {
				m[s.key] = s.val
			}
			if _, err := json.MarshalIndent(m, "", "  "); err != nil {
				b.Fatal(err)
			}
		}
	})
}
