// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
)

// sdNotify sends state ("READY=1", "STOPPING=1") to systemd's notification
// socket when the daemon runs as a Type=notify service (sd_notify(3)); it
// does nothing when NOTIFY_SOCKET is unset. The protocol is one datagram
// on a unix socket, simpler by hand than with a library; a failure only
// costs systemd's view of the start, so it is logged, not returned.
func sdNotify(state string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	if err := notifySocket(addr, state); err != nil {
		slog.Default().Warn("sd_notify", "state", state, "err", err)
	}
}

// notifySocket sends one datagram to the unix socket addr ("@name" is in
// the abstract namespace, as systemd passes it).
func notifySocket(addr, state string) error {
	name := addr
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify socket %s: %w", addr, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify socket %s: %w", addr, err)
	}
	return nil
}
