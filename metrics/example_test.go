// SPDX-License-Identifier: Apache-2.0

package metrics_test

import (
	"bufio"
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/metrics"
)

// oneLUN stands in for *bridge.Daemon.
type oneLUN struct{}

func (oneLUN) List() []bridge.LUNInfo {
	l := bridge.LUNInfo{Name: "disk0", Size: 64 << 20, State: bridge.StateOnline}
	l.Stats.Kinds[bridge.KindWrite].Ops = 384
	l.Stats.Kinds[bridge.KindWrite].Bytes = 24 << 20
	return []bridge.LUNInfo{l}
}

func ExampleHandler() {
	h := metrics.Handler(oneLUN{}, metrics.Options{Version: "1.0"})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, `kind="write"`) && !strings.Contains(line, "_bucket") ||
			strings.HasPrefix(line, "lunbridge_state{") {
			fmt.Println(line)
		}
	}
	// Output:
	// lunbridge_bytes_total{kind="write",lun="disk0"} 2.5165824e+07
	// lunbridge_command_duration_seconds_sum{kind="write",lun="disk0"} 0
	// lunbridge_command_duration_seconds_count{kind="write",lun="disk0"} 0
	// lunbridge_commands_total{kind="write",lun="disk0"} 384
	// lunbridge_state{lun="disk0",state="failed"} 0
	// lunbridge_state{lun="disk0",state="offline"} 0
	// lunbridge_state{lun="disk0",state="online"} 1
	// lunbridge_state{lun="disk0",state="stalled"} 0
}
