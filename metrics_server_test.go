// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/lunbridge/lunbridge/bridge"
)

func TestStartMetrics(t *testing.T) {
	d := bridge.NewDaemon(bridge.DaemonOptions{})
	stop, err := startMetrics(t.Context(), "", d)
	if err != nil || stop() != nil {
		t.Fatalf("startMetrics(\"\") = %v, want a no-op", err)
	}

	// A busy address fails the start with exit status 1.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := busy.Addr().String()
	_, err = startMetrics(t.Context(), addr, d)
	var ec cli.ExitCoder
	if !errors.As(err, &ec) || ec.ExitCode() != exitFailure || !strings.Contains(err.Error(), "metrics") {
		t.Errorf("startMetrics(busy %s) = %v, want exit status %d", addr, err, exitFailure)
	}
	busy.Close()

	// The freed address serves /metrics until stop.
	stop, err = startMetrics(t.Context(), addr, d)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `lunbridge_build_info{version="`+version+`"} 1`) {
		t.Errorf("GET /metrics:\n%s", body)
	}
	if err := stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}
