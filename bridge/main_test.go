// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"os"
	"testing"
)

// TestMain marks the process an I/O flusher first, as lunbridge's main
// does, so that tests and benchmarks serve with plain worker goroutines.
func TestMain(m *testing.M) {
	MarkIOFlusher() // without it, workers lock and mark their own threads
	os.Exit(m.Run())
}
