// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// EventKind is the generic netlink command of a TCM-USER event.
type EventKind uint8

// The kernel's announcements on the TCM-USER family's "config" group
// (enum tcmu_genl_cmd in <linux/target_core_user.h>).
const (
	EventAdded    EventKind = 1 // TCMU_CMD_ADDED_DEVICE: a backstore was enabled
	EventRemoved  EventKind = 2 // TCMU_CMD_REMOVED_DEVICE: one was deleted
	EventReconfig EventKind = 3 // TCMU_CMD_RECONFIG_DEVICE: dev_size, dev_config or write cache changed
	// EventLost is not a kernel command: the socket's buffer overflowed
	// (ENOBUFS) and announcements were dropped; rescan configfs.
	EventLost EventKind = 0xff
)

func (k EventKind) String() string {
	switch k {
	case EventAdded:
		return "added"
	case EventRemoved:
		return "removed"
	case EventReconfig:
		return "reconfig"
	case EventLost:
		return "lost"
	}
	return "cmd" + strconv.Itoa(int(k))
}

// Netlink attributes of the events (enum tcmu_genl_attr).
const (
	attrDevice   = 1 // TCMU_ATTR_DEVICE: the UIO name, NUL-terminated
	attrMinor    = 2 // TCMU_ATTR_MINOR: N of /dev/uioN, u32
	attrDeviceID = 8 // TCMU_ATTR_DEVICE_ID: se_device dev_index, u32
)

// Event is one announcement of the kernel about a TCMU device.
type Event struct {
	Kind EventKind
	// UIOName is the UIO name, "tcm-user/<HBA>/<Name>/<dev_config>";
	// HBA, Name and DevConfig are its parts (empty if it does not parse).
	UIOName   string
	HBA       int
	Name      string
	DevConfig string
	Minor     uint32 // N of /dev/uioN
	DeviceID  uint32 // the kernel's device index, for netlink replies
}

// Ours reports whether the device is lunbridge's: its dev_config starts
// with "lunbridge/". Every other device belongs to another handler
// daemon (tcmu-runner) and must be left alone.
func (e Event) Ours() bool { return strings.HasPrefix(e.DevConfig, configPrefix) }

// Events receives the kernel's TCM-USER device announcements. It only
// listens: lunbridge never sends TCMU_CMD_SET_FEATURES, so the kernel
// waits for no reply from it (tcmu_kern_cmd_reply_supported stays as a
// tcmu-runner left it), and it never answers an event. Another listener
// (tcmu-runner) gets the same multicast messages independently.
type Events struct {
	f *os.File
}

// OpenEvents joins the TCM-USER family's "config" multicast group. It
// fails when target_core_user is not loaded (the family is unknown).
// Events the kernel sends from now on queue in the socket until Run
// reads them, so a caller may scan configfs after OpenEvents and before
// Run without missing a device.
func OpenEvents() (*Events, error) {
	fd, err := genlJoin("TCM-USER", "config")
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tcmu: netlink socket: %w", err)
	}
	// Non-blocking, so reads park in Go's poller and Run can be
	// cancelled with a deadline.
	return &Events{f: os.NewFile(uintptr(fd), "tcm-user-netlink")}, nil
}

// Run calls fn for each event until ctx is done, then closes the socket.
// fn runs on Run's goroutine; a slow fn delays the next events (the
// socket buffers them; on overflow fn gets EventLost).
func (e *Events) Run(ctx context.Context, fn func(Event)) error {
	defer e.f.Close()
	stop := context.AfterFunc(ctx, func() { e.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 1<<16)
	for {
		n, err := e.f.Read(buf)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, syscall.ENOBUFS):
			fn(Event{Kind: EventLost})
			continue
		case err != nil:
			return fmt.Errorf("tcmu: read netlink: %w", err)
		}
		for _, ev := range parseEvents(buf[:n]) {
			fn(ev)
		}
	}
}

// parseEvents decodes the generic netlink messages in one datagram;
// messages of other commands or too short are skipped.
func parseEvents(b []byte) []Event {
	var out []Event
	for len(b) >= unix.SizeofNlMsghdr {
		n := int(ne.Uint32(b[0:]))
		if n < unix.SizeofNlMsghdr || n > len(b) {
			break
		}
		msg := b[unix.SizeofNlMsghdr:n]
		b = b[min((n+3)&^3, len(b)):]
		if len(msg) < 4 { // struct genlmsghdr
			continue
		}
		kind := EventKind(msg[0])
		if kind != EventAdded && kind != EventRemoved && kind != EventReconfig {
			continue
		}
		attrs := nlAttrs(msg[4:])
		ev := Event{Kind: kind, UIOName: strings.TrimRight(string(attrs[attrDevice]), "\x00")}
		if v := attrs[attrMinor]; len(v) == 4 {
			ev.Minor = ne.Uint32(v)
		}
		if v := attrs[attrDeviceID]; len(v) == 4 {
			ev.DeviceID = ne.Uint32(v)
		}
		ev.HBA, ev.Name, ev.DevConfig = parseUIOName(ev.UIOName)
		out = append(out, ev)
	}
	return out
}

// parseUIOName splits "tcm-user/<HBA>/<Name>/<dev_config>" (uioName);
// dev_config may itself contain '/'.
func parseUIOName(s string) (hba int, name, devConfig string) {
	parts := strings.SplitN(s, "/", 4)
	if len(parts) != 4 || parts[0] != "tcm-user" {
		return 0, "", ""
	}
	hba, err := strconv.Atoi(parts[1])
	if err != nil {
		return 0, "", ""
	}
	return hba, parts[2], parts[3]
}
