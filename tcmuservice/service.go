// SPDX-License-Identifier: Apache-2.0

package tcmuservice

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"
)

// Names on the bus, as tcmu-runner uses them and targetcli looks for them.
const (
	BusName   = "org.kernel.TCMUService1"
	Interface = "org.kernel.TCMUService1"
	// RootPath carries org.freedesktop.DBus.ObjectManager; each handler
	// is an object below it.
	RootPath dbus.ObjectPath = "/org/kernel/TCMUService1"
)

const (
	ifaceObjectManager = "org.freedesktop.DBus.ObjectManager"
	ifaceProperties    = "org.freedesktop.DBus.Properties"
)

// Errors callers branch on.
var (
	// ErrNoBus: the bus could not be reached (no dbus-daemon running).
	ErrNoBus = errors.New("D-Bus bus not reachable")
	// ErrNameTaken: another process (tcmu-runner) owns BusName.
	ErrNameTaken = errors.New("name " + BusName + " is owned by another process")
)

// Options configure a Service.
type Options struct {
	// Address is the bus address; empty means the system bus
	// (DBUS_SYSTEM_BUS_ADDRESS, else /var/run/dbus/system_bus_socket).
	Address string
	// Handler is the handler name: the subtype of dev_config and the
	// "user:<Handler>" directory in targetcli. Default "lunbridge".
	Handler string
	// ConfigDesc is shown by targetcli's "help create".
	ConfigDesc string
	// Check validates the cfgstring (what follows "<Handler>/" in
	// dev_config); nil accepts what CheckFile accepts.
	Check func(cfgstring string) error
	// Logger receives one Debug line per CheckConfig call.
	Logger *slog.Logger
}

// DefaultConfigDesc describes the cfgstring CheckFile accepts.
const DefaultConfigDesc = "Absolute path of the backing file or block device.\n" +
	"A missing file is created sparse, of the backstore's size, in an\n" +
	"existing directory; a smaller file is grown to it.\n" +
	"Example: /srv/disk1.img"

// Service owns BusName and exports the handler object.
type Service struct {
	conn *dbus.Conn
	opts Options
	log  *slog.Logger
}

// Start connects to the bus, exports the objects and requests BusName.
// A bus that cannot be reached gives ErrNoBus; a name owned by someone
// else gives ErrNameTaken. Close releases everything.
func Start(opts Options) (*Service, error) {
	if opts.Handler == "" {
		opts.Handler = "lunbridge"
	}
	if opts.ConfigDesc == "" {
		opts.ConfigDesc = DefaultConfigDesc
	}
	if opts.Check == nil {
		opts.Check = CheckFile
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var conn *dbus.Conn
	var err error
	if opts.Address == "" {
		conn, err = dbus.ConnectSystemBus()
	} else {
		conn, err = dbus.Connect(opts.Address)
	}
	if err != nil {
		return nil, fmt.Errorf("tcmuservice: connect: %w: %w", ErrNoBus, err)
	}
	s := &Service{conn: conn, opts: opts, log: log}
	if err := s.export(); err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	reply, err := conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("tcmuservice: request %s: %w", BusName, err), conn.Close())
	}
	if reply != dbus.RequestNameReplyPrimaryOwner {
		return nil, errors.Join(fmt.Errorf("tcmuservice: request name: reply %d: %w", reply, ErrNameTaken), conn.Close())
	}
	return s, nil
}

// Path is the object path of the handler.
func (s *Service) Path() dbus.ObjectPath {
	return RootPath + "/" + dbus.ObjectPath(s.opts.Handler)
}

// Close gives up the name and closes the connection.
func (s *Service) Close() error {
	return s.conn.Close()
}

func (s *Service) export() error {
	path := s.Path()
	props := prop.Map{Interface: {
		"ConfigDesc": {Value: s.opts.ConfigDesc, Emit: prop.EmitConst},
	}}
	p, err := prop.Export(s.conn, path, props)
	if err != nil {
		return fmt.Errorf("tcmuservice: export properties: %w", err)
	}
	h := &handler{s: s}
	if err := s.conn.Export(h, path, Interface); err != nil {
		return fmt.Errorf("tcmuservice: export %s: %w", path, err)
	}
	node := &introspect.Node{
		Name: string(path),
		Interfaces: []introspect.Interface{
			introspect.IntrospectData,
			prop.IntrospectData,
			{
				Name: Interface,
				Methods: []introspect.Method{{
					Name: "CheckConfig",
					Args: []introspect.Arg{
						{Name: "cfgstring", Type: "s", Direction: "in"},
						{Name: "is_valid", Type: "b", Direction: "out"},
						{Name: "message", Type: "s", Direction: "out"},
					},
				}},
				Properties: p.Introspection(Interface),
			},
		},
	}
	if err := s.conn.Export(introspect.NewIntrospectable(node), path, introspect.IntrospectData.Name); err != nil {
		return fmt.Errorf("tcmuservice: export introspection: %w", err)
	}
	if err := s.conn.Export(&manager{s: s}, RootPath, ifaceObjectManager); err != nil {
		return fmt.Errorf("tcmuservice: export object manager: %w", err)
	}
	return nil
}

// handler implements org.kernel.TCMUService1 on the handler object.
type handler struct{ s *Service }

// CheckConfig is org.kernel.TCMUService1.CheckConfig(s) -> (b, s).
// targetcli passes the whole dev_config, "<handler>/<cfgstring>"; a
// string without that prefix is taken as the cfgstring itself.
func (h *handler) CheckConfig(cfg string) (bool, string, *dbus.Error) {
	cfgstring := strings.TrimPrefix(cfg, h.s.opts.Handler+"/")
	err := h.s.opts.Check(cfgstring)
	h.s.log.Debug("CheckConfig", "config", cfg, "err", err)
	if err != nil {
		return false, err.Error(), nil
	}
	return true, "success", nil
}

// manager implements org.freedesktop.DBus.ObjectManager on RootPath.
type manager struct{ s *Service }

// GetManagedObjects lists the handler object with its properties, as
// targetcli reads them.
func (m *manager) GetManagedObjects() (map[dbus.ObjectPath]map[string]map[string]dbus.Variant, *dbus.Error) {
	return map[dbus.ObjectPath]map[string]map[string]dbus.Variant{
		m.s.Path(): {
			Interface: {"ConfigDesc": dbus.MakeVariant(m.s.opts.ConfigDesc)},
		},
	}, nil
}

// CheckFile is the default cfgstring check: an absolute, clean path
// without ',' (the kernel's control separator), newlines or other control
// bytes, at most 1024 bytes, naming a regular file or block device, or
// nothing yet in an existing directory (the file is created when served).
func CheckFile(p string) error {
	switch {
	case p == "":
		return errors.New("empty cfgstring: want the absolute path of a backing file")
	case len(p) > 1024:
		return fmt.Errorf("path of %d bytes, at most 1024", len(p))
	case !filepath.IsAbs(p):
		return fmt.Errorf("%q is not an absolute path", p)
	case filepath.Clean(p) != p:
		return fmt.Errorf("%q is not clean: write %q", p, filepath.Clean(p))
	case strings.ContainsAny(p, ","):
		return fmt.Errorf("%q contains ',', the kernel's control separator", p)
	}
	for _, c := range []byte(p) {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%q contains a control byte", p)
		}
	}
	st, err := os.Stat(p)
	switch {
	case err == nil && (st.Mode().IsRegular() || st.Mode()&fs.ModeDevice != 0 && st.Mode()&fs.ModeCharDevice == 0):
		return nil
	case err == nil:
		return fmt.Errorf("%s is not a regular file or block device", p)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	dir := filepath.Dir(p)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%s does not exist and its directory %s is missing", p, dir)
	}
	return nil
}
