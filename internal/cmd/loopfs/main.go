// SPDX-License-Identifier: Apache-2.0

// Command loopfs mounts a go-fuse loopback file system: DIR appears at
// MOUNTPOINT through FUSE until SIGINT or SIGTERM. The real-kernel tests
// put lunbridge's backing files on it, as users do with sshfs or a
// distributed file system's FUSE client.
//
//	loopfs [-no-fallocate] [-locks] DIR MOUNTPOINT
//
// -no-fallocate refuses every fallocate (EOPNOTSUPP), as MooseFS and other
// FUSE file systems without it do.
//
// -locks has the kernel forward POSIX and OFD locks to loopfs, which takes
// them on the files beneath (so two loopfs mounts of one directory exclude
// each other, like two clients of a distributed file system); without it
// the kernel keeps them per mount. With -locks, SIGUSR1 drops every lock
// taken through this mount, as a distributed file system's server does
// when it expires the session of a client that stopped answering (a
// paused machine): the gateway tests stop lunbridge and this client, and
// another gateway then gets the lock.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
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
	return track(fh), fl, errno
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	in, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	return in, track(fh), fl, errno
}

// trackedFile is an open file of the mount, listed in files until
// released.
type trackedFile struct{ *fs.LoopbackFile }

var _ = (fs.FileReleaser)((*trackedFile)(nil))

var (
	filesMu sync.Mutex
	files   = map[*trackedFile]bool{} // protected by filesMu
)

func track(fh fs.FileHandle) fs.FileHandle {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		return fh
	}
	t := &trackedFile{lf}
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
		fd, ok := t.PassthroughFd()
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
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: loopfs [-no-fallocate] [-locks] DIR MOUNTPOINT")
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
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGUSR1)
	fmt.Println("loopfs: mounted", dir, "at", mnt)
	for s := range sig {
		if s != syscall.SIGUSR1 {
			break
		}
		fmt.Println("loopfs: dropped the locks of", dropLocks(), "open files")
	}
	if err := srv.Unmount(); err != nil {
		fmt.Fprintln(os.Stderr, "loopfs:", err)
		os.Exit(1)
	}
	srv.Wait()
}
