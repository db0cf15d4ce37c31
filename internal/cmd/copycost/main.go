// SPDX-License-Identifier: Apache-2.0

// Command copycost measures, on the machine it runs on, what it costs to
// move 1 MiB between a file on a memory file system and a buffer shaped
// like a TCMU data area (an anonymous shared mapping, 4 KiB blocks), in
// the two ways lunbridge can: preadv/pwritev (the kernel's copy, one
// system call per command) and a copy between the file's mapping and the
// buffer (Go's memmove, no system call). integration's TestBenchCopy
// runs it in the guest of the real-kernel tests; BENCHMARKS.md has its
// figures.
//
//	copycost [-size MiB] [-passes N] FILE
//
// FILE is created (or overwritten) with -size MiB of data; it should be
// on tmpfs. Each method makes one unmeasured pass over the file (which
// maps every page), then N measured passes, and prints a line:
//
//	copycost METHOD MiB/s US-PER-MiB
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

const (
	chunk = 1 << 20 // a sequential job's command
	block = 4096    // the data area's block
	slots = 8       // commands in flight at QD8: the data area used
)

func main() {
	sizeMiB := flag.Int("size", 256, "file size in MiB")
	passes := flag.Int("passes", 4, "measured passes over the file per method")
	rounds := flag.Int("rounds", 2, "times to measure every method")
	flag.Parse()
	if flag.NArg() != 1 {
		log.Fatal("usage: copycost [-size MiB] [-passes N] [-rounds N] FILE")
	}
	size := int64(*sizeMiB) << 20
	f, err := os.OpenFile(flag.Arg(0), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, chunk)
	for off := int64(0); off < size; off += chunk {
		for i := range buf {
			buf[i] = byte(off>>20) + byte(i)
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			log.Fatal(err)
		}
	}
	area, err := unix.Mmap(-1, 0, slots*chunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		log.Fatal(err)
	}
	for i := range area {
		area[i] = 1
	}
	file, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		log.Fatal(err)
	}
	fd := int(f.Fd())
	iov := make([]unix.Iovec, chunk/block)
	methods := []struct {
		name string
		move func(slot []byte, off int64)
	}{
		{"preadv", func(s []byte, off int64) { vectored(fd, iov, s, off, unix.SYS_PREADV) }},
		{"mapped-read", func(s []byte, off int64) { copy(s, file[off:off+chunk]) }},
		{"pwritev", func(s []byte, off int64) { vectored(fd, iov, s, off, unix.SYS_PWRITEV) }},
		{"mapped-write", func(s []byte, off int64) { copy(file[off:off+chunk], s) }},
	}
	pass := func(move func([]byte, int64)) {
		for off := int64(0); off < size; off += chunk {
			slot := area[(off/chunk)%slots*chunk:][:chunk]
			move(slot, off)
		}
	}
	for range *rounds {
		for _, m := range methods {
			pass(m.move)
			start := time.Now()
			for range *passes {
				pass(m.move)
			}
			el := time.Since(start)
			mib := float64(*passes) * float64(size>>20)
			fmt.Printf("copycost %-12s %8.1f MiB/s %7.0f us/MiB\n", m.name, mib/el.Seconds(), el.Seconds()*1e6/mib)
		}
	}
}
