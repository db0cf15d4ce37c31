// SPDX-License-Identifier: Apache-2.0

package lio

import (
	"context"
	"testing"

	"github.com/lunbridge/lunbridge/tcmu"
)

// TestRingOptionsReachTheRing: a LUN's ring gets the defaults and a
// logger.
func TestRingOptionsReachTheRing(t *testing.T) {
	k, err := New(t.Context(), Config{LoadModules: nopLoad})
	if err != nil {
		t.Fatal(err)
	}
	o := k.ringOptions("a")
	if o.Logger == nil {
		t.Errorf("ringOptions = %+v, want a logger", o)
	}
	o.Logger = nil
	if o != (tcmu.RingOptions{}) {
		t.Errorf("ringOptions = %+v, want the defaults", o)
	}
}

func nopLoad(context.Context, ...string) error { return nil }
