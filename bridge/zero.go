// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// zeroCaps says which fallocate modes have been seen to zero a range on
// the file system of a backing file. A FUSE file system may return 0 from
// fallocate without doing what the mode asks: GlusterFS 10.3's FUSE client
// turns FALLOC_FL_ZERO_RANGE into a keep-size allocation and leaves the
// old data in place. A mode is used only after probeZeroing proved it.
type zeroCaps struct {
	punch     bool // FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE zeroes
	zeroRange bool // FALLOC_FL_ZERO_RANGE|FALLOC_FL_KEEP_SIZE zeroes
}

// String describes the zeroing methods for the log.
func (c zeroCaps) String() string {
	unmap, zero := "writes zeros", "writes zeros"
	switch {
	case c.punch:
		unmap = "punches holes"
	case c.zeroRange:
		unmap = "zero-range"
	}
	if c.zeroRange {
		zero = "zero-range"
	}
	return fmt.Sprintf("unmap %s, write-zeroes %s", unmap, zero)
}

// fallocFunc is fallocate(2); tests substitute file systems that lie.
type fallocFunc func(fd int, mode uint32, off, n int64) error

// probeBlock is the size of each of the three regions of the probe file.
// 64 KiB is larger than the block of any file system and than Gluster's
// write-behind window for a single write.
const probeBlock = 64 << 10

// probeZeroing finds out which fallocate modes really zero on the file
// system of dir. It creates a scratch file in dir, and for each mode
// fills three regions with a pattern, zeroes the middle one and reads the
// whole file back: the mode is proven only when the middle reads as zeros,
// the outer regions are intact and the size is unchanged. It trusts
// nothing the file system says about itself, only what reads back.
func probeZeroing(dir string, falloc fallocFunc) (zeroCaps, error) {
	f, err := os.CreateTemp(dir, ".lunbridge-zero-probe-*")
	if err != nil {
		return zeroCaps{}, fmt.Errorf("zeroing probe in %s: %w", dir, err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	var caps zeroCaps
	for _, m := range []struct {
		mode uint32
		ok   *bool
	}{
		{unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE, &caps.punch},
		{unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE, &caps.zeroRange},
	} {
		ok, err := probeMode(f, falloc, m.mode)
		if err != nil {
			return caps, fmt.Errorf("zeroing probe %s: %w", f.Name(), err)
		}
		*m.ok = ok
	}
	return caps, nil
}

// probeMode checks one fallocate mode on the scratch file f.
func probeMode(f *os.File, falloc fallocFunc, mode uint32) (bool, error) {
	pattern := bytes.Repeat([]byte{0xa5}, 3*probeBlock)
	if _, err := f.WriteAt(pattern, 0); err != nil {
		return false, err
	}
	if err := f.Sync(); err != nil {
		return false, err
	}
	if err := falloc(int(f.Fd()), mode, probeBlock, probeBlock); err != nil {
		// EOPNOTSUPP, ENOSYS, EINVAL: the mode is not there. Any
		// other error also means it is not proven.
		return false, nil
	}
	got := make([]byte, len(pattern)+1)
	n, err := f.ReadAt(got, 0)
	if n != len(pattern) {
		return false, fmt.Errorf("read back %d bytes, want %d: %w", n, len(pattern), err)
	}
	zero := make([]byte, probeBlock)
	return bytes.Equal(got[:probeBlock], pattern[:probeBlock]) &&
		bytes.Equal(got[probeBlock:2*probeBlock], zero) &&
		bytes.Equal(got[2*probeBlock:n], pattern[2*probeBlock:]), nil
}

// probeBackingZeroing decides how to zero ranges of the regular file f.
// A scratch file next to f is probed; when that is impossible (a
// read-only directory), every zeroing writes zeros. Block devices are not
// probed: the block layer's BLKZEROOUT semantics back fallocate there.
func probeBackingZeroing(f *os.File, falloc fallocFunc) (zeroCaps, error) {
	st, err := f.Stat()
	if err != nil {
		return zeroCaps{}, err
	}
	if !st.Mode().IsRegular() {
		return zeroCaps{punch: true, zeroRange: true}, nil
	}
	return probeZeroing(filepath.Dir(f.Name()), falloc)
}
