// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/lease"
	"github.com/lunbridge/lunbridge/scsi"
)

// A network or FUSE file system can go away under an open file: the FUSE
// client process dies (every call on the mount answers ENOTCONN, calls in
// flight ECONNABORTED), or the server no longer knows the file handle
// (ESTALE). The descriptor is then dead for good, even once the file
// system is back (a new mount is a new file system). The LUN does not keep
// trying it: it goes offline with the state "failed" and the reason, and
// every media command answers NOT READY, MANUAL INTERVENTION REQUIRED
// (02/04/03) at once. Setting it online (echo online > state) reopens the
// path when the old descriptor is dead, onto the same descriptor numbers.
//
// A gateway LUN is different: the other gateways of its group still have
// the file through their own clients. It stays online and fences itself
// instead (Gateway.Lost, gateway.go): ALUA unavailable, so that the
// initiator's multipath moves to the gateway that takes over; the daemon
// rejoins as standby once restarted on a working mount.

// lostErr reports whether err says the backing store's file system is
// gone from under the open file.
func lostErr(err error) bool { return lease.FileGone(err) }

// backingLost takes the LUN offline as failed, with the reason, after err
// from the backing store. It logs once per loss. A gateway LUN fences its
// gateway instead and answers with the gateway's sense.
func (l *LUN) backingLost(err error) *scsi.Error {
	if l.gateway != nil {
		if se, ok := errors.AsType[*scsi.Error](l.gateway.Lost(err)); ok {
			return se
		}
	}
	l.disk.SetOnline(false)
	reason := fmt.Sprintf("backing store lost: %v", err)
	l.infoMu.Lock()
	first := l.reason == ""
	if first {
		l.reason = reason
	}
	l.infoMu.Unlock()
	if l.state.Swap(uint32(StateFailed)) != uint32(StateFailed) || first {
		l.log.Error("backing store lost; the LUN answers NOT READY until set online", "path", l.path, "err", err)
	}
	return scsi.ErrNotReadyManual
}

// Reason explains a failed or stalled state; empty otherwise.
func (l *LUN) Reason() string {
	switch l.currentState() {
	case StateFailed:
		l.infoMu.Lock()
		defer l.infoMu.Unlock()
		if l.reason == "" {
			return "ring failed: see the log"
		}
		return l.reason
	case StateStalled:
		l.infoMu.Lock()
		srv := l.srv
		l.infoMu.Unlock()
		if srv != nil {
			age, _ := srv.stalled()
			return fmt.Sprintf("a command has been in the backing store for %v", age.Round(time.Second))
		}
	}
	return ""
}

// reopenIfDead checks the backing file's descriptors with fstat and, when
// one is dead, opens the path again and puts the new file on the old
// descriptor numbers with dup3: workers keep using the same numbers and
// never see a closed one.
func (l *LUN) reopenIfDead() (err error) {
	files := []*os.File{l.be.f}
	if l.be.direct != nil {
		files = append(files, l.be.direct)
	}
	reopened := false
	defer func() {
		if reopened && err == nil {
			err = l.reclaim()
		}
	}()
	for _, f := range files {
		var st unix.Stat_t
		err := unix.Fstat(int(f.Fd()), &st)
		if err == nil {
			continue
		}
		flags, ferr := openFlags(f)
		if ferr != nil {
			return fmt.Errorf("LUN %s: descriptor dead (%v): %w", l.name, err, ferr)
		}
		if f == l.be.direct {
			flags |= syscall.O_DIRECT
		}
		nf, oerr := os.OpenFile(l.path, flags, 0)
		if oerr != nil {
			return fmt.Errorf("LUN %s: descriptor dead (%v); reopen: %w", l.name, err, oerr)
		}
		derr := unix.Dup3(int(nf.Fd()), int(f.Fd()), unix.O_CLOEXEC)
		nf.Close()
		if derr != nil {
			return fmt.Errorf("LUN %s: reopen %s: dup3: %w", l.name, l.path, derr)
		}
		reopened = true
		l.log.Info("backing file reopened", "path", l.path, "err", err)
	}
	return nil
}

// reclaim claims the reopened backing file again: the ownership lock was
// on a descriptor of the same lost file system and went with it, and
// another exporter may have claimed the file meanwhile. Then the LUN
// stays failed.
func (l *LUN) reclaim() error {
	l.infoMu.Lock()
	old := l.hold
	l.hold = nil
	l.infoMu.Unlock()
	old.Close() // dead, or ours: either way not in the new claim's way
	h, err := claim(l.be.f, Options{Name: l.name, Gateway: l.gateway})
	if err != nil {
		return fmt.Errorf("LUN %s: claim the reopened file: %w", l.name, err)
	}
	l.infoMu.Lock()
	l.hold = h
	l.infoMu.Unlock()
	return nil
}

// setOnline brings the LUN online: when it failed because its backing
// store was lost, it first reopens the file if the old descriptor is
// dead, and stays failed if that fails.
func (l *LUN) setOnline() error {
	if State(l.state.Load()) == StateFailed {
		if err := l.reopenIfDead(); err != nil {
			return err
		}
		l.infoMu.Lock()
		l.reason = ""
		l.infoMu.Unlock()
	}
	l.SetOnline(true)
	return nil
}
