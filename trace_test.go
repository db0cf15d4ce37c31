// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestStartTrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.out")
	stop, err := startTrace(path)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Every execution trace starts with this header (internal/trace).
	if !bytes.HasPrefix(b, []byte("go 1.")) {
		t.Errorf("trace starts %q, want a Go execution trace header", b[:min(len(b), 16)])
	}
}

func TestStartTraceUnset(t *testing.T) {
	stop, err := startTrace("")
	if err != nil {
		t.Fatal(err)
	}
	stop() // nothing to stop; must not panic
}

func TestStartTraceBadPath(t *testing.T) {
	if _, err := startTrace(filepath.Join(t.TempDir(), "no", "such", "dir", "t.out")); err == nil {
		t.Error("startTrace into a missing directory: no error")
	}
}
