// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"testing"
	"time"
)

// TestBell: a ring before the wait is kept, each ring wakes one wait,
// and a parked wait wakes on a ring; the same for the channel bell used
// when no eventfd can be made.
func TestBell(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    *bell
	}{
		{"eventfd", newBell()},
		{"channel", &bell{fd: -1, ch: make(chan struct{}, 1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.b
			defer b.close()
			if tc.name == "eventfd" && b.f == nil {
				t.Fatal("newBell made no eventfd")
			}
			b.ring()
			b.wait() // returns at once: the ring was kept
			woke := waitAsync(b)
			select {
			case <-woke:
				t.Fatal("wait returned with no ring pending")
			case <-time.After(20 * time.Millisecond):
			}
			b.ring()
			select {
			case <-woke:
			case <-time.After(10 * time.Second):
				t.Fatal("wait still parked 10s after the ring")
			}
		})
	}
}

// TestBellRingsCounted: on the eventfd, two rings before two waits are
// two wake-ups, not one (EFD_SEMAPHORE), so a ring is never merged away.
func TestBellRingsCounted(t *testing.T) {
	b := newBell()
	defer b.close()
	b.ring()
	b.ring()
	b.wait()
	select {
	case <-waitAsync(b):
	case <-time.After(10 * time.Second):
		t.Fatal("the second ring was lost")
	}
}

// waitAsync waits on b in a goroutine; the channel is closed when the
// wait returns.
func waitAsync(b *bell) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		b.wait()
		close(done)
	}()
	return done
}

// BenchmarkBell: one ring and one wait on the same goroutine, and a ring
// that wakes a parked goroutine (the hand-off the executors make).
func BenchmarkBell(b *testing.B) {
	b.Run("self", func(b *testing.B) {
		bl := newBell()
		defer bl.close()
		b.ReportAllocs()
		for range b.N {
			bl.ring()
			bl.wait()
		}
	})
	b.Run("pingpong", func(b *testing.B) {
		ping, pong := newBell(), newBell()
		defer ping.close()
		defer pong.close()
		n := b.N
		go func() {
			for range n {
				ping.wait()
				pong.ring()
			}
		}()
		b.ReportAllocs()
		for range n {
			ping.ring()
			pong.wait()
		}
	})
}
