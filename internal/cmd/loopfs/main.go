// Command loopfs mounts a go-fuse loopback file system: DIR appears at
// MOUNTPOINT through FUSE until SIGINT or SIGTERM. The real-kernel tests
// put lunbridge's backing files on it, as users do with sshfs or a
// distributed file system's FUSE client.
//
//	loopfs [-no-fallocate] DIR MOUNTPOINT
//
// -no-fallocate refuses every fallocate (EOPNOTSUPP), as MooseFS and other
// FUSE file systems without it do.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// noAllocNode is a loopback node whose file system has no fallocate. It
// wraps every child in its kind too (go-fuse's NodeWrapChilder).
type noAllocNode struct{ *fs.LoopbackNode }

var (
	_ = (fs.NodeAllocater)((*noAllocNode)(nil))
	_ = (fs.NodeWrapChilder)((*noAllocNode)(nil))
)

func (n *noAllocNode) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &noAllocNode{ops.(*fs.LoopbackNode)}
}

func (n *noAllocNode) Allocate(ctx context.Context, f fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	return syscall.EOPNOTSUPP
}

func main() {
	noFallocate := flag.Bool("no-fallocate", false, "refuse every fallocate with EOPNOTSUPP")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: loopfs [-no-fallocate] DIR MOUNTPOINT")
		os.Exit(2)
	}
	dir, mnt := flag.Arg(0), flag.Arg(1)
	root, err := fs.NewLoopbackRoot(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loopfs:", err)
		os.Exit(1)
	}
	if *noFallocate {
		root = &noAllocNode{root.(*fs.LoopbackNode)}
	}
	srv, err := fs.Mount(mnt, root, &fs.Options{
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "loopfs", Name: "loopfs"},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "loopfs:", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	fmt.Println("loopfs: mounted", dir, "at", mnt)
	<-sig
	if err := srv.Unmount(); err != nil {
		fmt.Fprintln(os.Stderr, "loopfs:", err)
		os.Exit(1)
	}
	srv.Wait()
}
