// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"log/slog"
	"net"

	"github.com/urfave/cli/v2"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/metrics"
)

// metricsFlag is export's --metrics; serve takes the same from its config
// file's "metrics" key.
func metricsFlag() cli.Flag {
	return &cli.StringFlag{
		Name:  "metrics",
		Usage: "serve Prometheus metrics at ADDR:PORT/metrics, e.g. 127.0.0.1:9573; empty: off",
	}
}

// startMetrics serves /metrics for d at addr until ctx is done or stop is
// called; with an empty addr it does nothing. A bad or busy address is an
// error here, before any LUN is served.
func startMetrics(ctx context.Context, addr string, d *bridge.Daemon) (stop func() error, err error) {
	if addr == "" {
		return func() error { return nil }, nil
	}
	log := slog.Default()
	srv, err := metrics.Listen(addr, d, metrics.Options{Version: version, Logger: log})
	if err != nil {
		return nil, cli.Exit(err.Error(), exitFailure)
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			log.Warn("metrics are served on every interface; give a specific address such as 127.0.0.1:9573 to limit who can read them", "addr", addr)
		}
	}
	log.Info("serving Prometheus metrics", "url", "http://"+srv.Addr().String()+"/metrics")
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- srv.Run(mctx) }()
	return func() error {
		cancel()
		return <-done
	}, nil
}
