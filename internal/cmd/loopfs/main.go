// Command loopfs mounts a go-fuse loopback file system: DIR appears at
// MOUNTPOINT through FUSE until SIGINT or SIGTERM. The real-kernel tests
// put lunbridge's backing files on it, as users do with sshfs or a
// distributed file system's FUSE client.
//
//	loopfs DIR MOUNTPOINT
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: loopfs DIR MOUNTPOINT")
		os.Exit(2)
	}
	root, err := fs.NewLoopbackRoot(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "loopfs:", err)
		os.Exit(1)
	}
	srv, err := fs.Mount(os.Args[2], root, &fs.Options{
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "loopfs", Name: "loopfs"},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "loopfs:", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	fmt.Println("loopfs: mounted", os.Args[1], "at", os.Args[2])
	<-sig
	if err := srv.Unmount(); err != nil {
		fmt.Fprintln(os.Stderr, "loopfs:", err)
		os.Exit(1)
	}
	srv.Wait()
}
