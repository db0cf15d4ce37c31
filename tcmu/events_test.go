// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"context"
	"os"
	"reflect"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// genlMsg builds a generic netlink message as the kernel's
// tcmu_netlink_event_init does: nlmsghdr, genlmsghdr (cmd, version 2),
// then TCMU_ATTR_DEVICE, TCMU_ATTR_MINOR and TCMU_ATTR_DEVICE_ID.
func genlMsg(cmd uint8, dev string, minor, id uint32) []byte {
	body := []byte{cmd, 2, 0, 0}
	body = nlAttr(body, attrDevice, append([]byte(dev), 0))
	body = nlAttr(body, attrMinor, ne.AppendUint32(nil, minor))
	body = nlAttr(body, attrDeviceID, ne.AppendUint32(nil, id))
	msg := ne.AppendUint32(nil, uint32(unix.SizeofNlMsghdr+len(body)))
	msg = ne.AppendUint16(msg, 0x20) // family id
	msg = ne.AppendUint16(msg, 0)
	msg = ne.AppendUint32(msg, 0)
	msg = ne.AppendUint32(msg, 0)
	return append(msg, body...)
}

func TestParseEvents(t *testing.T) {
	two := append(genlMsg(1, "tcm-user/1/disk1/lunbridge//srv/d.img", 3, 7),
		genlMsg(2, "tcm-user/0/x/file/y", 0, 8)...)
	for _, tc := range []struct {
		name string
		in   []byte
		want []Event
	}{
		{"added and removed", two, []Event{
			{Kind: EventAdded, UIOName: "tcm-user/1/disk1/lunbridge//srv/d.img", HBA: 1, Name: "disk1",
				DevConfig: "lunbridge//srv/d.img", Minor: 3, DeviceID: 7},
			{Kind: EventRemoved, UIOName: "tcm-user/0/x/file/y", HBA: 0, Name: "x", DevConfig: "file/y", DeviceID: 8},
		}},
		{"reply commands skipped", genlMsg(4, "tcm-user/1/a/lunbridge/a", 1, 1), nil},
		{"bad name", genlMsg(3, "uio-other", 1, 2), []Event{{Kind: EventReconfig, UIOName: "uio-other", Minor: 1, DeviceID: 2}}},
		{"truncated", two[:10], nil},
		{"bad length", append([]byte{0xff, 0xff, 0, 0}, two[4:]...), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseEvents(tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseEvents = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestEventOurs(t *testing.T) {
	for _, tc := range []struct {
		dc   string
		want bool
	}{
		{"lunbridge//srv/a.img", true},
		{"lunbridge/a", true},
		{"file//srv/a.img", false},
		{"lunbridgex/a", false},
		{"", false},
	} {
		if got := (Event{DevConfig: tc.dc}).Ours(); got != tc.want {
			t.Errorf("Event{DevConfig: %q}.Ours() = %v, want %v", tc.dc, got, tc.want)
		}
	}
}

// TestEventsRun feeds Run datagrams through a socket pair standing in
// for the netlink socket: each message reaches fn, and cancelling ctx
// ends Run promptly with nil (the read deadline, not a stuck read).
func TestEventsRun(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	peer := os.NewFile(uintptr(fds[1]), "peer")
	defer peer.Close()
	e := &Events{f: os.NewFile(uintptr(fds[0]), "events")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan Event, 4)
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, func(ev Event) { got <- ev }) }()

	for _, m := range [][]byte{
		genlMsg(1, "tcm-user/1/disk1/lunbridge//srv/d.img", 3, 7),
		genlMsg(4, "tcm-user/1/disk1/lunbridge//srv/d.img", 3, 7), // a reply: skipped
		genlMsg(2, "tcm-user/1/disk1/lunbridge//srv/d.img", 3, 7),
	} {
		if _, err := peer.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []EventKind{EventAdded, EventRemoved} {
		select {
		case ev := <-got:
			if ev.Kind != want || ev.Name != "disk1" || !ev.Ours() {
				t.Errorf("event %+v, want %v of disk1", ev, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %v event", want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if len(got) != 0 {
		t.Errorf("extra event %+v", <-got)
	}
}
