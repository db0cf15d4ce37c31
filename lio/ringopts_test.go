// SPDX-License-Identifier: Apache-2.0

package lio

import (
	"context"
	"testing"

	"github.com/lunbridge/lunbridge/tcmu"
)

func TestRingOptions(t *testing.T) {
	for _, tt := range []struct {
		waiter string
		want   tcmu.WaiterMode
		ok     bool
	}{
		{"", tcmu.WaiterNetpoll, true},
		{"netpoll", tcmu.WaiterNetpoll, true},
		{"blocking", tcmu.WaiterBlocking, true},
		{"blocked", 0, false},
	} {
		o, err := ringOptions(tt.waiter)
		if (err == nil) != tt.ok || (tt.ok && o.Waiter != tt.want) {
			t.Errorf("ringOptions(%q) = %+v, %v; want waiter %v, ok %v", tt.waiter, o, err, tt.want, tt.ok)
		}
		if err2 := CheckRingOptions(tt.waiter); (err2 == nil) != tt.ok {
			t.Errorf("CheckRingOptions(%q) = %v, want ok %v", tt.waiter, err2, tt.ok)
		}
		_, err = New(t.Context(), Config{RingWaiter: tt.waiter, LoadModules: nopLoad})
		if (err == nil) != tt.ok {
			t.Errorf("New with RingWaiter %q = %v, want ok %v", tt.waiter, err, tt.ok)
		}
	}
}

// TestRingOptionsReachTheRing: a LUN's ring gets the Kernel's settings.
func TestRingOptionsReachTheRing(t *testing.T) {
	k, err := New(t.Context(), Config{RingWaiter: "blocking", LoadModules: nopLoad})
	if err != nil {
		t.Fatal(err)
	}
	o := k.ringOptions("a")
	if o.Waiter != tcmu.WaiterBlocking || o.Logger == nil {
		t.Errorf("ringOptions = %+v, want blocking and a logger", o)
	}
}

func nopLoad(context.Context, ...string) error { return nil }
