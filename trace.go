// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"runtime/trace"
)

// traceEnv names the file that Go's execution tracer writes to for the
// daemon's whole life, for performance work (BENCHMARKS.md): goroutine
// wake-ups, the netpoller, system calls and GC, which no kernel tracer
// sees. Unset, nothing is traced and nothing costs.
const traceEnv = "LUNBRIDGE_TRACE"

// startTrace starts the execution tracer if path is set and returns what
// stops it and flushes the file; that must run before the process exits,
// which os.Exit would skip.
func startTrace(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", traceEnv, err)
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: start tracer: %w", traceEnv, err)
	}
	return func() {
		trace.Stop()
		f.Close()
	}, nil
}
