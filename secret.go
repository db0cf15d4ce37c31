// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// maxSecretFile bounds what readSecretFile reads: a CHAP secret is at
// most 255 bytes, so anything much longer is the wrong file.
const maxSecretFile = 4096

// readSecretFile reads a secret (a CHAP password) from path and returns
// it without its trailing newline. It refuses a file that someone other
// than root or the daemon's user could have read or written, because then
// the secret is not one: a group- or world-readable file (mode & 0o077
// != 0; chmod 600 it), a file owned by another user, or something other
// than a regular file (a FIFO would block the start, a device could be
// anything). The checks are made on the opened descriptor (fstat), so a
// path swapped between check and read cannot slip another file in.
func readSecretFile(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("%s has mode %04o: a secret file must not be readable or writable by group or others (chmod 600 %s)", path, perm, path)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if uid := int(sys.Uid); uid != 0 && uid != os.Geteuid() {
			return "", fmt.Errorf("%s is owned by uid %d: a secret file must be owned by root or the daemon's user (uid %d)", path, uid, os.Geteuid())
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxSecretFile {
		return "", errors.New("longer than 4096 bytes: not a secret file")
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
