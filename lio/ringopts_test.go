// SPDX-License-Identifier: Apache-2.0

package lio

import (
	"context"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/tcmu"
)

func TestRingOptions(t *testing.T) {
	for _, tt := range []struct {
		waiter string
		spin   time.Duration
		want   tcmu.WaiterMode
		ok     bool
	}{
		{"", 0, tcmu.WaiterNetpoll, true},
		{"netpoll", 50 * time.Microsecond, tcmu.WaiterNetpoll, true},
		{"blocking", MaxRingSpin, tcmu.WaiterBlocking, true},
		{"blocked", 0, 0, false},
		{"blocking", -time.Microsecond, 0, false},
		{"blocking", MaxRingSpin + 1, 0, false},
	} {
		o, err := ringOptions(tt.waiter, tt.spin)
		if (err == nil) != tt.ok || (tt.ok && (o.Waiter != tt.want || o.Spin != tt.spin)) {
			t.Errorf("ringOptions(%q, %v) = %+v, %v; want waiter %v, ok %v", tt.waiter, tt.spin, o, err, tt.want, tt.ok)
		}
		if err2 := CheckRingOptions(tt.waiter, tt.spin); (err2 == nil) != tt.ok {
			t.Errorf("CheckRingOptions(%q, %v) = %v, want ok %v", tt.waiter, tt.spin, err2, tt.ok)
		}
		_, err = New(t.Context(), Config{RingWaiter: tt.waiter, RingSpin: tt.spin, LoadModules: nopLoad})
		if (err == nil) != tt.ok {
			t.Errorf("New with RingWaiter %q, RingSpin %v = %v, want ok %v", tt.waiter, tt.spin, err, tt.ok)
		}
	}
}

// TestRingOptionsReachTheRing: a LUN's ring gets the Kernel's settings.
func TestRingOptionsReachTheRing(t *testing.T) {
	k, err := New(t.Context(), Config{RingWaiter: "blocking", RingSpin: 50 * time.Microsecond, LoadModules: nopLoad})
	if err != nil {
		t.Fatal(err)
	}
	o := k.ringOptions("a")
	if o.Waiter != tcmu.WaiterBlocking || o.Spin != 50*time.Microsecond || o.Logger == nil {
		t.Errorf("ringOptions = %+v, want blocking, 50µs and a logger", o)
	}
}

func nopLoad(context.Context, ...string) error { return nil }
