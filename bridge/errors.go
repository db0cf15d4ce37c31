// SPDX-License-Identifier: Apache-2.0

package bridge

import "errors"

// Sentinel errors for conditions callers branch on. Control errors wrap one
// of them, so the CLI and the FUSE view can tell a bad request (EINVAL) from
// a missing LUN (ENOENT).
var (
	ErrNotFound = errors.New("no such LUN")
	ErrExists   = errors.New("LUN exists")
	ErrInvalid  = errors.New("invalid request")
	ErrClosed   = errors.New("LUN closed")
)
