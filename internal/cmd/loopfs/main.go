// SPDX-License-Identifier: Apache-2.0

// Command loopfs mounts a go-fuse loopback file system: DIR appears at
// MOUNTPOINT through FUSE until SIGINT or SIGTERM. The real-kernel tests
// put lunbridge's backing files on it, as users do with sshfs or a
// distributed file system's FUSE client.
//
//	loopfs [-no-fallocate] [-no-passthrough] [-locks] [-hang NAME] DIR MOUNTPOINT
//
// -no-fallocate refuses every fallocate (EOPNOTSUPP), as MooseFS and other
// FUSE file systems without it do.
//
// -no-passthrough keeps every file out of FUSE passthrough (Linux 6.9 and
// later; go-fuse uses it when run as root), in which the kernel reads,
// writes and maps the file beneath directly, as no client of a remote
// file system can: its page cache is then the file beneath's.
//
// -locks has the kernel forward POSIX and OFD locks to loopfs, which takes
// them on the files beneath (so two loopfs mounts of one directory exclude
// each other, like two clients of a distributed file system); without it
// the kernel keeps them per mount. With -locks, SIGUSR1 drops every lock
// taken through this mount, as a distributed file system's server does
// when it expires the session of a client that stopped answering (a
// paused machine): the gateway tests stop lunbridge and this client, and
// another gateway then gets the lock.
//
// -hang NAME makes SIGUSR2 a switch: after the first, every write to a
// file named NAME (in any directory) is held inside loopfs, its caller
// blocked in the kernel, until the next SIGUSR2 lets the held writes go
// on (and so on). loopfs prints "loopfs: holding a write to NAME at OFF"
// for each write it holds, as a file system client stuck on its server
// would hold it: the gateway tests hang the owner's write this way.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// node is a loopback node that keeps track of its open files (for
// SIGUSR1) and, with -no-fallocate, has no fallocate. It wraps every
// child in its kind too (go-fuse's NodeWrapChilder).
type node struct {
	*fs.LoopbackNode
	noFallocate bool
}

var (
	_ = (fs.NodeAllocater)((*node)(nil))
	_ = (fs.NodeWrapChilder)((*node)(nil))
	_ = (fs.NodeOpener)((*node)(nil))
	_ = (fs.NodeCreater)((*node)(nil))
)

func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{ops.(*fs.LoopbackNode), n.noFallocate}
}

func (n *node) Allocate(ctx context.Context, f fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	if n.noFallocate {
		return syscall.EOPNOTSUPP
	}
	if a, ok := f.(fs.FileAllocater); ok {
		return a.Allocate(ctx, off, size, mode)
	}
	return syscall.ENOTSUP
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	return track(fh, filepath.Base(n.Path(nil))), fl, errno
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	in, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	return in, track(fh, name), fl, errno
}

// trackedFile is an open file of the mount, listed in files until
// released. name is its base name, for -hang.
type trackedFile struct {
	*fs.LoopbackFile
	name string
}

var (
	_ = (fs.FileReleaser)((*trackedFile)(nil))
	_ = (fs.FileWriter)((*trackedFile)(nil))
)

// hang holds writes to files named hangName while hangOn (-hang).
var (
	hangName string // -hang; empty: nothing is held
	hangMu   sync.Mutex
	hangOn   bool          // protected by hangMu
	hangGo   chan struct{} // protected by hangMu: closed when the held writes may go on
)

// toggleHang switches holding on or off, and says so.
func toggleHang() {
	hangMu.Lock()
	defer hangMu.Unlock()
	hangOn = !hangOn
	if hangOn {
		hangGo = make(chan struct{})
		fmt.Println("loopfs: holding writes to", hangName)
		return
	}
	close(hangGo)
	fmt.Println("loopfs: letting the writes to", hangName, "go on")
}

// noPassthrough is -no-passthrough.
var noPassthrough bool

// PassthroughFd keeps the kernel from writing to a -hang file itself
// (FUSE passthrough, Linux 6.9 and later): its writes must reach Write.
// With -no-passthrough no file is passed through.
func (t *trackedFile) PassthroughFd() (int, bool) {
	if noPassthrough || hangName != "" && t.name == hangName {
		return 0, false
	}
	return t.LoopbackFile.PassthroughFd()
}

// Write holds the write while the -hang switch is on for this file, then
// writes through.
func (t *trackedFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if hangName != "" && t.name == hangName {
		hangMu.Lock()
		on, release := hangOn, hangGo
		hangMu.Unlock()
		if on {
			fmt.Printf("loopfs: holding a write to %s at %d\n", t.name, off)
			<-release
		}
	}
	return t.LoopbackFile.Write(ctx, data, off)
}

var (
	filesMu sync.Mutex
	files   = map[*trackedFile]bool{} // protected by filesMu
)

func track(fh fs.FileHandle, name string) fs.FileHandle {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		return fh
	}
	t := &trackedFile{lf, name}
	filesMu.Lock()
	files[t] = true
	filesMu.Unlock()
	return t
}

func (t *trackedFile) Release(ctx context.Context) syscall.Errno {
	filesMu.Lock()
	delete(files, t)
	filesMu.Unlock()
	return t.LoopbackFile.Release(ctx)
}

// ofdSetlk is F_OFD_SETLK, which package syscall lacks (go-fuse's
// loopback defines it likewise; this command may not import x/sys/unix).
const ofdSetlk = 37

// dropLocks releases every OFD lock held through the open files of the
// mount: go-fuse's loopback takes FUSE's POSIX locks as OFD locks on its
// own descriptors.
func dropLocks() int {
	filesMu.Lock()
	defer filesMu.Unlock()
	n := 0
	for t := range files {
		fd, ok := t.LoopbackFile.PassthroughFd()
		if !ok {
			continue
		}
		lk := syscall.Flock_t{Type: syscall.F_UNLCK}
		if syscall.FcntlFlock(uintptr(fd), ofdSetlk, &lk) == nil {
			n++
		}
	}
	return n
}

func main() {
	noFallocate := flag.Bool("no-fallocate", false, "refuse every fallocate with EOPNOTSUPP")
	locks := flag.Bool("locks", false, "forward file locks to the files beneath; SIGUSR1 drops them")
	flag.StringVar(&hangName, "hang", "", "SIGUSR2 switches holding the writes to files of this name on and off")
	flag.BoolVar(&noPassthrough, "no-passthrough", false, "never let the kernel use the files beneath directly (FUSE passthrough)")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: loopfs [-no-fallocate] [-no-passthrough] [-locks] [-hang NAME] DIR MOUNTPOINT")
		os.Exit(2)
	}
	dir, mnt := flag.Arg(0), flag.Arg(1)
	root, err := fs.NewLoopbackRoot(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loopfs:", err)
		os.Exit(1)
	}
	root = &node{root.(*fs.LoopbackNode), *noFallocate}
	srv, err := fs.Mount(mnt, root, &fs.Options{
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "loopfs", Name: "loopfs", EnableLocks: *locks},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "loopfs:", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGUSR2)
	fmt.Println("loopfs: mounted", dir, "at", mnt)
	for s := range sig {
		if s == syscall.SIGUSR2 {
			if hangName != "" {
				toggleHang()
			}
			continue
		}
		if s != syscall.SIGUSR1 {
			break
		}
		fmt.Println("loopfs: dropped the locks of", dropLocks(), "open files")
	}
	hangMu.Lock()
	if hangOn {
		hangOn = false
		close(hangGo) // unmounting: let held writes finish
	}
	hangMu.Unlock()
	if err := srv.Unmount(); err != nil {
		fmt.Fprintln(os.Stderr, "loopfs:", err)
		os.Exit(1)
	}
	srv.Wait()
}
