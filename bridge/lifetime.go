// SPDX-License-Identifier: Apache-2.0

package bridge

import "errors"

// The lifetime of what a worker touches.
//
// A worker executing a command holds slices of the ring's shared memory
// (Cmd.Data, mapped from the UIO device) and calls preadv/pwritev on the
// backing file's descriptor number. A worker blocked in a hung file system
// cannot be interrupted, and Serve returns without it after its grace
// period. If the daemon then unmapped the ring and closed the file, the
// worker, once the file system answers, would copy into unmapped memory
// or parse it (a fault), and write to whatever file has since been given
// the same descriptor number. So the release of both waits: Serve records
// the workers it left behind, and whenWorkersExit queues the release until
// the last of them has returned. A daemon that exits first leaves both to
// the kernel's process teardown (and the TCMU backstore in configfs, which
// the next lunbridge adopts).

// leaveBehind records that Serve returned while workers of one Serve were
// still running; done is closed when they have all exited. It reports
// false when they exited meanwhile.
func (l *LUN) leaveBehind(done chan struct{}) bool {
	l.lifeMu.Lock()
	defer l.lifeMu.Unlock()
	select {
	case <-done:
		return false
	default:
	}
	l.stuck = append(l.stuck, done)
	return true
}

// workersExited is called once every worker of a Serve has exited, after
// done is closed. When no Serve's workers are left, it runs the releases
// whenWorkersExit queued, in order.
func (l *LUN) workersExited(done chan struct{}) {
	l.lifeMu.Lock()
	for i, c := range l.stuck {
		if c == done {
			l.stuck = append(l.stuck[:i], l.stuck[i+1:]...)
			break
		}
	}
	var run []func() error
	if len(l.stuck) == 0 {
		run, l.pending = l.pending, nil
	}
	l.lifeMu.Unlock()
	if len(run) == 0 {
		return
	}
	var errs []error
	for _, fn := range run {
		errs = append(errs, fn())
	}
	if err := errors.Join(errs...); err != nil {
		l.log.Error("release after stuck workers returned", "err", err)
	} else {
		l.log.Info("stuck workers returned; ring mapping and backing file released")
	}
}

// whenWorkersExit runs release now, and returns its error, when no worker
// that Serve left behind is still running; otherwise it queues release to
// run when the last of them exits and returns nil with now false.
func (l *LUN) whenWorkersExit(release func() error) (now bool, err error) {
	l.lifeMu.Lock()
	if len(l.stuck) > 0 {
		l.pending = append(l.pending, release)
		l.lifeMu.Unlock()
		return false, nil
	}
	l.lifeMu.Unlock()
	return true, release()
}

// WorkersStuck reports whether workers that a Serve gave up on are still
// blocked in the backing store.
func (l *LUN) WorkersStuck() bool {
	l.lifeMu.Lock()
	defer l.lifeMu.Unlock()
	return len(l.stuck) > 0
}
