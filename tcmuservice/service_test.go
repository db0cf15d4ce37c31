// SPDX-License-Identifier: Apache-2.0

package tcmuservice

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/godbus/dbus/v5"
)

// startBus runs a private dbus-daemon with the system bus's default
// policy and lunbridge's policy file, and returns its address.
func startBus(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("dbus-daemon not installed (Debian package dbus)")
	}
	if os.Geteuid() != 0 {
		t.Skip("the shipped policy lets only root own the name")
	}
	dir := t.TempDir()
	policy, err := filepath.Abs("../packaging/dbus-org.kernel.TCMUService1.conf")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile("testdata/bus.conf.in")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "bus")
	conf := strings.NewReplacer("@SOCKET@", sock, "@POLICY@", policy).Replace(string(tmpl))
	confPath := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config-file="+confPath, "--nofork", "--nopidfile", "--print-address")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Stderr stays closed: as root in a container the daemon warns that
	// it cannot raise its fd limit, which is harmless.
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon printed no address: %v", err)
	}
	return strings.TrimSpace(line)
}

func start(t *testing.T, opts Options) *Service {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func client(t *testing.T, addr string) *dbus.Conn {
	t.Helper()
	c, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestTargetcliView makes the calls targetcli-fb makes
// (ui_backstore.py): GetManagedObjects on the root, the properties of
// each handler object, and CheckConfig with "<handler>/<cfgstring>".
func TestTargetcliView(t *testing.T) {
	addr := startBus(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(file, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, Options{Address: addr})
	c := client(t, addr)

	var objs map[dbus.ObjectPath]map[string]map[string]dbus.Variant
	err := c.Object(BusName, RootPath).Call("org.freedesktop.DBus.ObjectManager.GetManagedObjects", 0).Store(&objs)
	if err != nil {
		t.Fatalf("GetManagedObjects: %v", err)
	}
	want := dbus.ObjectPath("/org/kernel/TCMUService1/lunbridge")
	if len(objs) != 1 || objs[want] == nil {
		t.Fatalf("GetManagedObjects = %v, want one object %s", objs, want)
	}
	if got := objs[want][Interface]["ConfigDesc"].Value(); got != DefaultConfigDesc {
		t.Errorf("managed ConfigDesc = %q, want %q", got, DefaultConfigDesc)
	}
	if s.Path() != want {
		t.Errorf("Path() = %s, want %s", s.Path(), want)
	}

	obj := c.Object(BusName, want)
	v, err := obj.GetProperty(Interface + ".ConfigDesc")
	if err != nil || v.Value() != DefaultConfigDesc {
		t.Errorf("Get ConfigDesc = %v, %v; want %q", v, err, DefaultConfigDesc)
	}
	var all map[string]dbus.Variant
	if err := obj.Call(ifaceProperties+".GetAll", 0, Interface).Store(&all); err != nil || len(all) != 1 {
		t.Errorf("GetAll = %v, %v; want ConfigDesc only", all, err)
	}
	var xml string
	if err := obj.Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&xml); err != nil ||
		!strings.Contains(xml, `<method name="CheckConfig">`) {
		t.Errorf("Introspect = %q, %v; want CheckConfig in it", xml, err)
	}

	for _, tc := range []struct {
		cfg  string
		ok   bool
		text string
	}{
		{"lunbridge/" + file, true, "success"},
		{"lunbridge/" + filepath.Join(dir, "new.img"), true, "success"},
		{file, true, "success"}, // without the handler prefix
		{"lunbridge/disk.img", false, "not an absolute path"},
		{"lunbridge/", false, "empty"},
		{"lunbridge/" + dir, false, "not a regular file"},
		{"lunbridge/" + dir + "/x,y", false, "separator"},
		{"lunbridge/" + dir + "/a\nb", false, "control byte"},
		{"lunbridge/" + dir + "/../x", false, "not clean"},
		{"lunbridge//nonexistent-dir/x.img", false, "directory /nonexistent-dir is missing"},
	} {
		var ok bool
		var msg string
		if err := obj.Call(Interface+".CheckConfig", 0, tc.cfg).Store(&ok, &msg); err != nil {
			t.Fatalf("CheckConfig(%q): %v", tc.cfg, err)
		}
		if ok != tc.ok || !strings.Contains(msg, tc.text) {
			t.Errorf("CheckConfig(%q) = %v, %q; want %v, containing %q", tc.cfg, ok, msg, tc.ok, tc.text)
		}
	}
}

func TestCustomCheck(t *testing.T) {
	addr := startBus(t)
	// The check runs on godbus's goroutine; the reply travels through the
	// bus, which the race detector cannot see, so hand the value over.
	seen := make(chan string, 1)
	start(t, Options{Address: addr, Handler: "h", ConfigDesc: "d", Check: func(s string) error {
		seen <- s
		return errors.New("no")
	}})
	c := client(t, addr)
	var ok bool
	var msg string
	obj := c.Object(BusName, "/org/kernel/TCMUService1/h")
	if err := obj.Call(Interface+".CheckConfig", 0, "h/x").Store(&ok, &msg); err != nil {
		t.Fatal(err)
	}
	got := <-seen
	if ok || msg != "no" || got != "x" {
		t.Errorf("CheckConfig(h/x) = %v, %q (check saw %q); want false, \"no\" (check sees \"x\")", ok, msg, got)
	}
}

func TestNameTaken(t *testing.T) {
	addr := startBus(t)
	start(t, Options{Address: addr})
	_, err := Start(Options{Address: addr})
	if !errors.Is(err, ErrNameTaken) {
		t.Fatalf("second Start = %v, want ErrNameTaken", err)
	}
}

func TestNoBus(t *testing.T) {
	_, err := Start(Options{Address: "unix:path=" + filepath.Join(t.TempDir(), "none")})
	if !errors.Is(err, ErrNoBus) {
		t.Fatalf("Start without a bus = %v, want ErrNoBus", err)
	}
}

// TestPolicyDeniesOthers calls the service through the shipped policy
// as user nobody (dbus-send run with that uid): the bus refuses the call,
// and also refuses nobody the name.
func TestPolicyDeniesOthers(t *testing.T) {
	addr := startBus(t)
	send, err := exec.LookPath("dbus-send")
	if err != nil {
		t.Skip("dbus-send not installed")
	}
	sock := strings.TrimPrefix(strings.Split(addr, ",")[0], "unix:path=")
	for _, d := range []string{filepath.Dir(sock), filepath.Dir(filepath.Dir(sock))} {
		if err := os.Chmod(d, 0o755); err != nil { // t.TempDir is 0700
			t.Fatal(err)
		}
	}
	start(t, Options{Address: addr})
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	for _, args := range [][]string{
		{"--print-reply", "--dest=" + BusName, "/org/kernel/TCMUService1/lunbridge",
			Interface + ".CheckConfig", "string:lunbridge//tmp/x"},
		{"--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
			"org.freedesktop.DBus.RequestName", "string:" + BusName, "uint32:4"},
	} {
		cmd := exec.Command(send, append([]string{"--bus=" + addr}, args...)...)
		cmd.SysProcAttr = nobody
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "AccessDenied") {
			t.Errorf("as nobody: dbus-send %s = %v, %q; want AccessDenied", args[3], err, out)
		}
	}
	// The same call as root goes through.
	out, err := exec.Command(send, "--bus="+addr, "--print-reply", "--dest="+BusName,
		"/org/kernel/TCMUService1/lunbridge", Interface+".CheckConfig", "string:lunbridge//tmp/x").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "boolean true") {
		t.Errorf("as root: CheckConfig = %v, %q; want true", err, out)
	}
}

// TestGioClient makes targetcli-fb's calls with the library targetcli
// uses (python3-gi's Gio.DBusProxy, as in ui_backstore.py), so property
// loading and the '(s)' call signature are checked against GLib's D-Bus
// client, not only godbus's.
func TestGioClient(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import gi").Run(); err != nil {
		t.Skip("python3-gi not installed")
	}
	addr := startBus(t)
	start(t, Options{Address: addr})
	cmd := exec.Command("/usr/bin/python3", "-c", `
from gi.repository import Gio
bus = Gio.bus_get_sync(Gio.BusType.SYSTEM, None)
def proxy(path, iface):
    return Gio.DBusProxy.new_sync(bus, Gio.DBusProxyFlags.NONE, None,
                                  'org.kernel.TCMUService1', path, iface, None)
m = proxy('/org/kernel/TCMUService1', 'org.freedesktop.DBus.ObjectManager')
for k, v in m.GetManagedObjects().items():
    p = proxy(k, 'org.kernel.TCMUService1')
    print(k[k.rfind("/")+1:])
    print(v["org.kernel.TCMUService1"]["ConfigDesc"].splitlines()[0])
    print(p.get_cached_property('ConfigDesc').unpack().splitlines()[0])
    print(p.CheckConfig('(s)', 'lunbridge//tmp'))
    print(p.CheckConfig('(s)', 'lunbridge//tmp/x.img'))
`)
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+addr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	want := "lunbridge\n" +
		"Absolute path of the backing file or block device.\n" +
		"Absolute path of the backing file or block device.\n" +
		"(False, '/tmp is not a regular file or block device')\n" +
		"(True, 'success')\n"
	if string(out) != want {
		t.Errorf("targetcli's calls through Gio printed\n%s\nwant\n%s", out, want)
	}
}
