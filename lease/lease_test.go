// SPDX-License-Identifier: Apache-2.0

package lease

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/internal/memdisk"
	"github.com/lunbridge/lunbridge/scsi"
)

// Short protocol times: every wait below is a condition polled with a
// generous deadline, so a loaded machine makes tests slower, not flaky.
const (
	testValidity = 100 * time.Millisecond
	testPoll     = 10 * time.Millisecond
	testHoldDown = 200 * time.Millisecond
)

var (
	memberA = Member{Group: 1, RelativePort: 1}
	memberB = Member{Group: 2, RelativePort: 2}
)

// gateway is one Lease running in the test process: a gateway with its
// own open file description of the shared sidecar.
type gateway struct {
	*Lease
	cancel  context.CancelFunc
	done    chan error
	mu      sync.Mutex
	changes []scsi.AccessState // protected by mu
	drained atomic.Int32
}

func startGateway(t *testing.T, path string, self, peer Member) *gateway {
	t.Helper()
	g := &gateway{done: make(chan error, 1)}
	l, err := Open(Config{
		Path: path, Self: self, Peers: []Member{peer},
		Validity: testValidity, Poll: testPoll, HoldDown: testHoldDown,
		Drain: func(context.Context) error { g.drained.Add(1); return nil },
		OnChange: func(s scsi.AccessState) error {
			g.mu.Lock()
			g.changes = append(g.changes, s)
			g.mu.Unlock()
			return nil
		},
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	g.Lease = l
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() { g.done <- l.Run(ctx) }()
	t.Cleanup(func() { g.stop(t) })
	return g
}

// stop shuts the gateway down cleanly (once).
func (g *gateway) stop(t *testing.T) {
	t.Helper()
	if g.cancel == nil {
		return
	}
	g.cancel()
	g.cancel = nil
	if err := <-g.done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

// kill simulates kill -9: Run returns and the description is closed,
// which releases the OFD lock, without a word to the sidecar.
func (g *gateway) kill(t *testing.T) {
	t.Helper()
	close(g.abandon)
	if err := <-g.done; err != nil {
		t.Errorf("Run after kill = %v", err)
	}
	g.cancel()
	g.cancel = nil
}

func (g *gateway) stateChanges() []scsi.AccessState {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]scsi.AccessState(nil), g.changes...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func isOwner(g *gateway) func() bool {
	return func() bool { return g.CheckWrite() == nil }
}

// exclusive watches a set of gateways until stopped and fails the test if
// two of them may acknowledge writes at the same moment. It samples the
// first one again after the second, so that an overlap it reports is
// real, not an artifact of sampling at two instants.
func exclusive(t *testing.T, gs ...*gateway) (stop func()) {
	t.Helper()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	var bad atomic.Bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-quit:
				return
			default:
			}
			for i, a := range gs {
				for _, b := range gs[i+1:] {
					if a.CheckWrite() == nil && b.CheckWrite() == nil && a.CheckWrite() == nil {
						bad.Store(true)
					}
				}
			}
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
		if bad.Load() {
			t.Error("two gateways could acknowledge writes at the same time")
		}
	}
}

func sidecar(t *testing.T) string { return filepath.Join(t.TempDir(), "lun.img.lease") }

func TestFirstGatewayOwnsSecondStandsBy(t *testing.T) {
	path := sidecar(t)
	a := startGateway(t, path, memberA, memberB)
	waitFor(t, "A to own the LUN", isOwner(a))
	b := startGateway(t, path, memberB, memberA)
	time.Sleep(3 * testValidity)
	if s := b.Status(); s.State != scsi.StateStandby || s.Owner || !s.OwnerKnown || s.OwnerGroup != memberA.Group || s.Epoch != 1 {
		t.Errorf("B.Status() = %+v, want standby, owner group 1, epoch 1", s)
	}
	if err := b.CheckWrite(); !errors.Is(err, scsi.ErrALUAStandby) {
		t.Errorf("B.CheckWrite() = %v, want %v", err, scsi.ErrALUAStandby)
	}
	if s := a.Status(); !s.Owner || s.Epoch != 1 || s.Acquired != 1 {
		t.Errorf("A.Status() = %+v, want owner at epoch 1", s)
	}
	// A went standby -> transitioning (takeover delay) -> active.
	want := []scsi.AccessState{scsi.StateTransitioning, scsi.StateActiveOptimized}
	if got := a.stateChanges(); !slices.Equal(got, want) {
		t.Errorf("A's state changes = %v, want %v", got, want)
	}
	// Both report the same picture in REPORT TARGET PORT GROUPS terms.
	for _, g := range []*gateway{a, b} {
		gs := g.PortGroups()
		if len(gs) != 2 || gs[0].ID != 1 || gs[0].State != scsi.StateActiveOptimized || !gs[0].Preferred ||
			gs[1].ID != 2 || gs[1].State != scsi.StateStandby || gs[1].Preferred || gs[1].Ports[0] != 2 {
			t.Errorf("group %d: PortGroups() = %+v", g.cfg.Self.Group, gs)
		}
	}
}

func TestKilledOwnerIsReplaced(t *testing.T) {
	path := sidecar(t)
	a := startGateway(t, path, memberA, memberB)
	waitFor(t, "A to own the LUN", isOwner(a))
	b := startGateway(t, path, memberB, memberA)
	check := exclusive(t, a, b)
	a.kill(t)
	start := time.Now()
	waitFor(t, "B to own the LUN", isOwner(b))
	check()
	// B waited out the takeover delay after the epoch bump.
	if took := time.Since(start); took < testValidity {
		t.Errorf("B owned the LUN %v after A died, before the takeover delay %v", took, testValidity)
	}
	if s := b.Status(); s.Epoch != 2 || s.Acquired != 1 {
		t.Errorf("B.Status() = %+v, want epoch 2", s)
	}
}

func TestStaleOwnerIsFenced(t *testing.T) {
	path := sidecar(t)
	a := startGateway(t, path, memberA, memberB)
	waitFor(t, "A to own the LUN", isOwner(a))
	b := startGateway(t, path, memberB, memberA)
	check := exclusive(t, a, b)
	// The file system drops A's lock behind its back (what a partitioned
	// client's lock suffers once the servers time it out); A runs on.
	a.unlock()
	waitFor(t, "B to own the LUN", isOwner(b))
	check()
	if s := a.Status(); s.Fenced != 1 || s.State != scsi.StateStandby || s.Owner {
		t.Errorf("A.Status() = %+v, want fenced once, standby", s)
	}
	if err := a.CheckWrite(); err == nil {
		t.Error("the fenced gateway may still acknowledge writes")
	}
	// A stays out: B holds the lock now.
	time.Sleep(3 * testValidity)
	if s := b.Status(); !s.Owner || s.Epoch != 2 {
		t.Errorf("B.Status() = %+v, want owner at epoch 2", s)
	}
	if s := a.Status(); s.State != scsi.StateStandby || s.OwnerGroup != memberB.Group {
		t.Errorf("A.Status() = %+v, want standby behind group 2", s)
	}
}

func TestOwnerCutOffStopsAcknowledging(t *testing.T) {
	path := sidecar(t)
	a := startGateway(t, path, memberA, memberB)
	waitFor(t, "A to own the LUN", isOwner(a))
	b := startGateway(t, path, memberB, memberA)
	// A cannot read the sidecar any more but keeps its lock: the
	// partition with the lock kept.
	a.failReads.Store(true)
	waitFor(t, "A to stop acknowledging", func() bool { return a.CheckWrite() != nil })
	if s := a.State(); s != scsi.StateTransitioning {
		t.Errorf("A.State() cut off = %v, want transitioning", s)
	}
	// Nobody else takes over while the lock is held: availability is
	// lost, never exclusivity.
	time.Sleep(3 * testValidity)
	if b.CheckWrite() == nil || b.State() != scsi.StateStandby {
		t.Errorf("B took over while A held the lock: %+v", b.Status())
	}
	a.failReads.Store(false)
	waitFor(t, "A to own the LUN again", isOwner(a))
	if s := a.Status(); s.Epoch != 1 || s.Fenced != 0 {
		t.Errorf("A.Status() after the cut = %+v, want epoch 1, never fenced", s)
	}
}

func TestHandoverOnInitiatorIO(t *testing.T) {
	path := sidecar(t)
	a := startGateway(t, path, memberA, memberB)
	waitFor(t, "A to own the LUN", isOwner(a))
	b := startGateway(t, path, memberB, memberA)
	check := exclusive(t, a, b)
	// An initiator sends I/O to B's standby port; B's disk refuses it
	// and tells the lease.
	b.Refused()
	waitFor(t, "B to own the LUN", isOwner(b))
	check()
	if s := a.Status(); s.Released != 1 || s.State != scsi.StateStandby || s.Fenced != 0 {
		t.Errorf("A.Status() = %+v, want released once, standby, not fenced", s)
	}
	if a.drained.Load() != 1 {
		t.Errorf("A drained %d times before handing over, want 1", a.drained.Load())
	}
	if s := b.Status(); s.Epoch != 2 {
		t.Errorf("B.Status() = %+v, want epoch 2", s)
	}
	// A does not take the LUN back by itself.
	time.Sleep(testHoldDown + 3*testValidity)
	if !isOwner(b)() || a.State() != scsi.StateStandby {
		t.Errorf("after the hold-down: A %+v, B %+v", a.Status(), b.Status())
	}
}

func TestRestartedOwnerRejoinsAsStandby(t *testing.T) {
	path := sidecar(t)
	a := startGateway(t, path, memberA, memberB)
	waitFor(t, "A to own the LUN", isOwner(a))
	b := startGateway(t, path, memberB, memberA)
	a.kill(t)
	waitFor(t, "B to own the LUN", isOwner(b))
	// The same gateway, restarted: a new nonce, same group.
	a2 := startGateway(t, path, memberA, memberB)
	time.Sleep(3 * testValidity)
	if s := a2.Status(); s.State != scsi.StateStandby || s.OwnerGroup != memberB.Group || s.Acquired != 0 {
		t.Errorf("restarted A: %+v, want standby behind group 2", s)
	}
	if !isOwner(b)() {
		t.Errorf("B lost the LUN to the restarted A: %+v", b.Status())
	}
}

func TestShutdownReleases(t *testing.T) {
	path := sidecar(t)
	a := startGateway(t, path, memberA, memberB)
	waitFor(t, "A to own the LUN", isOwner(a))
	b := startGateway(t, path, memberB, memberA)
	a.stop(t)
	if a.drained.Load() != 1 {
		t.Errorf("A drained %d times on shutdown, want 1", a.drained.Load())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if s := a.Status(); s.Released != 1 {
		t.Errorf("A.Status() after shutdown = %+v, want one release", s)
	}
	// A released epoch 1; B, a standby meanwhile, may already have
	// taken the LUN under epoch 2 by the time the record is read.
	r, err := decode(raw[ownerOff:], ownerMagic)
	releasedByA := !r.held && r.seq == 1 && r.group == memberA.Group
	takenByB := r.held && r.seq == 2 && r.group == memberB.Group
	if err != nil || !(releasedByA || takenByB) {
		t.Errorf("owner record after shutdown = %+v, %v; want epoch 1 of group 1 released, or epoch 2 held by group 2", r, err)
	}
	waitFor(t, "B to own the LUN", isOwner(b))
	if s := b.Status(); s.Epoch != 2 {
		t.Errorf("B.Status() = %+v, want epoch 2", s)
	}
}

func TestTornOwnerRecordFences(t *testing.T) {
	path := sidecar(t)
	a := startGateway(t, path, memberA, memberB)
	waitFor(t, "A to own the LUN", isOwner(a))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0xff}, recEpoch); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A to be fenced", func() bool { return a.Status().Fenced == 1 })
	// Still the only gateway: it takes the LUN again under a new epoch.
	waitFor(t, "A to own the LUN again", isOwner(a))
	if s := a.Status(); s.Epoch < 2 {
		t.Errorf("A.Status() = %+v, want a new epoch", s)
	}
}

func TestRecordCodec(t *testing.T) {
	r := record{seq: 0x0102030405060708, group: 7, held: true, nonce: [16]byte{1, 2, 3}}
	b := r.encode(ownerMagic)
	if len(b) != recordLen || !bytes.Equal(b[:8], []byte("LBLEASE1")) {
		t.Fatalf("encode = % x", b)
	}
	if got, err := decode(b, ownerMagic); err != nil || got != r {
		t.Errorf("decode(encode(r)) = %+v, %v; want %+v", got, err, r)
	}
	if _, err := decode(b, requestMagic); !errors.Is(err, errNoRecord) {
		t.Errorf("decode with the other magic = %v, want errNoRecord", err)
	}
	for i := range recCRC + 4 {
		c := bytes.Clone(b)
		c[i] ^= 0x10
		if _, err := decode(c, ownerMagic); !errors.Is(err, errNoRecord) {
			t.Errorf("decode with byte %d flipped = %v, want errNoRecord", i, err)
		}
	}
	if _, err := decode(make([]byte, recordLen), ownerMagic); !errors.Is(err, errNoRecord) {
		t.Errorf("decode(zeros) = %v, want errNoRecord", err)
	}
}

func TestOpenValidates(t *testing.T) {
	path := sidecar(t)
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"port 0", Config{Path: path, Self: Member{Group: 1}}},
		{"same group", Config{Path: path, Self: memberA, Peers: []Member{{Group: 1, RelativePort: 9}}}},
		{"same port", Config{Path: path, Self: memberA, Peers: []Member{{Group: 9, RelativePort: 1}}}},
		{"validity below two polls", Config{Path: path, Self: memberA, Validity: time.Second, Poll: time.Second}},
		{"no directory", Config{Path: filepath.Join(path, "x", "y"), Self: memberA}},
	} {
		if l, err := Open(tt.cfg); err == nil {
			l.f.Close()
			t.Errorf("%s: Open succeeded", tt.name)
		}
	}
}

// TestDiskOverLease drives a scsi.Disk whose ALUA provider is a Lease:
// the standby gateway refuses a WRITE with 02/04/0B, and that refusal
// moves ownership to it.
func TestDiskOverLease(t *testing.T) {
	path := sidecar(t)
	a := startGateway(t, path, memberA, memberB)
	waitFor(t, "A to own the LUN", isOwner(a))
	b := startGateway(t, path, memberB, memberA)
	waitFor(t, "B to read the sidecar", func() bool { return b.Status().OwnerKnown })
	disk, err := scsi.NewDisk(scsi.Config{BlockSize: 512, Blocks: 64, Serial: "lease-test", ALUA: b.Lease}, memdisk.New(64*512, 512))
	if err != nil {
		t.Fatal(err)
	}
	rtpg := []byte{0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}
	buf := make([]byte, 256)
	res, err := disk.Execute(rtpg, [][]byte{buf})
	if err != nil || res.DataIn != 4+2*12 || buf[4]&0x0f != byte(scsi.StateActiveOptimized) || buf[16]&0x0f != byte(scsi.StateStandby) {
		t.Fatalf("RTPG on B = % x, %v", buf[:res.DataIn], err)
	}
	write := []byte{0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0}
	_, err = disk.Execute(write, [][]byte{make([]byte, 512)})
	if !errors.Is(err, scsi.ErrALUAStandby) {
		t.Fatalf("WRITE on standby B = %v, want %v", err, scsi.ErrALUAStandby)
	}
	waitFor(t, "B to own the LUN", isOwner(b))
	if _, err := disk.Execute(write, [][]byte{make([]byte, 512)}); err != nil {
		t.Errorf("WRITE on owner B = %v", err)
	}
}
