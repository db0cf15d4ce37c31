package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/fabric"
	"github.com/lunbridge/lunbridge/fusefs"
	"github.com/lunbridge/lunbridge/lease"
)

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "export FILEs as LUNs 0..n-1 of one target until SIGINT or SIGTERM",
		ArgsUsage: "FILE...",
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "name", Usage: "LUN name, once per FILE (default: from the file name)"},
			&cli.StringFlag{Name: "size", Usage: "LUN size (64M, 10G, 1T); creates a missing FILE sparse, grows a smaller one"},
			&cli.UintFlag{Name: "block-size", Value: 512, Usage: "logical block size: 512 or 4096"},
			&cli.BoolFlag{Name: "read-only", Usage: "write-protect the LUNs"},
			&cli.BoolFlag{Name: "write-through", Usage: "complete writes only once durable (WCE=0); default is write-back with SYNCHRONIZE CACHE and FUA honoured"},
			&cli.BoolFlag{Name: "preallocate", Usage: "allocate every block of the FILEs before serving"},
			&cli.BoolFlag{Name: "direct-io", Usage: "read and write aligned transfers with O_DIRECT, around the page cache"},
			&cli.StringFlag{Name: "fabric", Value: "loop", Usage: "loop (a local /dev/sdX), iscsi, or none"},
			&cli.StringFlag{Name: "iqn", Usage: "iSCSI target name (default: derived from the host and LUN names)"},
			&cli.StringFlag{Name: "portal", Value: "0.0.0.0:3260", Usage: "iSCSI portal ADDR:PORT"},
			&cli.StringSliceFlag{Name: "initiator", Usage: "allow this initiator IQN (repeatable); none: no initiator may log in"},
			&cli.BoolFlag{Name: "insecure-allow-any-initiator", Usage: "let every initiator that reaches the portal log in (LIO demo mode)"},
			&cli.StringFlag{Name: "chap-user", Usage: "require iSCSI CHAP with this user name"},
			&cli.StringFlag{Name: "chap-password-file", Usage: "file holding the CHAP secret, mode 0600 (never given on the command line)"},
			&cli.StringFlag{Name: "chap-mutual-user", Usage: "mutual CHAP: the user name the target answers with"},
			&cli.StringFlag{Name: "chap-mutual-password-file", Usage: "mutual CHAP: file holding the target's secret, mode 0600"},
		}, append(gatewayFlags(), daemonFlags()...)...),
		Action: runExport,
	}
}

// daemonFlags are the flags export and serve share.
func daemonFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "workers", Usage: "I/O workers per LUN (default 2 x CPUs, at least 4)"},
		&cli.StringFlag{Name: "mount", Value: "/run/lunbridge", Usage: "where to mount the FUSE view; empty: no view"},
		&cli.BoolFlag{Name: "mount-allow-other", Usage: "let users other than root read the FUSE view"},
		&cli.DurationFlag{Name: "cmd-timeout", Value: 30 * time.Second, Usage: "kernel command timeout (TCMU cmd_time_out)"},
		&cli.StringFlag{Name: "max-transfer", Value: "1M", Usage: "largest command the LUNs accept (VPD Block Limits; TCMU hw_max_sectors)"},
		&cli.StringFlag{Name: "configfs", Value: "/sys/kernel/config", Hidden: true},
		metricsFlag(),
	}
}

func runExport(c *cli.Context) error {
	files := c.Args().Slice()
	if len(files) == 0 {
		return usageErr("export: give at least one FILE")
	}
	for _, f := range files {
		if strings.HasPrefix(f, "-") {
			return usageErr("export: %q after a FILE: flags go before the FILEs", f)
		}
	}
	names := c.StringSlice("name")
	if len(names) > len(files) {
		return usageErr("export: %d --name flags for %d FILEs", len(names), len(files))
	}
	var size int64
	if s := c.String("size"); s != "" {
		var err error
		if size, err = bridge.ParseSize(s); err != nil {
			return usageErr("--size %q: want a byte count such as 64M, 10G or 1T", s)
		}
	}
	bs := c.Uint("block-size")
	if bs != 512 && bs != 4096 {
		return usageErr("--block-size %d: want 512 or 4096", bs)
	}
	maxTransfer, err := bridge.ParseSize(c.String("max-transfer"))
	if err != nil || maxTransfer < 4096 || maxTransfer%4096 != 0 {
		return usageErr("--max-transfer %q: want a multiple of 4K such as 512K or 1M", c.String("max-transfer"))
	}
	spec, err := exportSpec(c.String("fabric"), c.String("iqn"), c.String("portal"),
		c.StringSlice("initiator"), c.String("chap-user"), c.String("chap-password-file"))
	if err != nil {
		return err
	}
	spec, err = accessSpec(spec, c.Bool("insecure-allow-any-initiator"),
		c.String("chap-mutual-user"), c.String("chap-mutual-password-file"))
	if err != nil {
		return err
	}
	var luns []lunConfig
	seen := map[string]bool{}
	for i, f := range files {
		name := ""
		if i < len(names) {
			name = names[i]
		} else {
			name = nameFromPath(f)
		}
		if err := bridge.ValidName(name); err != nil {
			return usageErr("%v (use --name)", err)
		}
		if seen[name] {
			return usageErr("two LUNs named %q (use --name)", name)
		}
		seen[name] = true
		luns = append(luns, lunConfig{
			Options: bridge.Options{
				Name:         name,
				Path:         f,
				Size:         size,
				BlockSize:    uint32(bs),
				ReadOnly:     c.Bool("read-only"),
				WriteThrough: c.Bool("write-through"),
				Workers:      c.Int("workers"),
				Preallocate:  c.Bool("preallocate"),
				DirectIO:     c.Bool("direct-io"),
				MaxTransfer:  maxTransfer,
			},
			Spec: spec,
		})
	}
	if spec.Fabric == "iscsi" && spec.IQN == "" {
		// All FILEs of one export are LUNs of one target.
		host, _ := os.Hostname()
		for i := range luns {
			luns[i].Spec.IQN = fabric.DefaultIQN(host, luns[0].Name)
		}
	}
	gateways, err := openGateways(c, luns)
	if err != nil {
		return err
	}
	return runDaemon(c.Context, daemonConfig{
		Gateways:    gateways,
		LUNs:        luns,
		Mount:       c.String("mount"),
		AllowOther:  c.Bool("mount-allow-other"),
		CmdTimeout:  c.Duration("cmd-timeout"),
		MaxTransfer: maxTransfer,
		Configfs:    c.String("configfs"),
		Workers:     c.Int("workers"),
		Out:         c.App.Writer,
		Metrics:     c.String("metrics"),
	})
}

// exportSpec validates the fabric flags.
func exportSpec(fab, iqn, portal string, initiators []string, chapUser, chapFile string) (bridge.ExportSpec, error) {
	spec := bridge.ExportSpec{Fabric: fab, IQN: iqn, Portal: portal, Initiators: initiators, CHAPUser: chapUser}
	switch fab {
	case "loop", "none":
		if iqn != "" || len(initiators) > 0 || chapUser != "" {
			return spec, usageErr("--iqn, --initiator and --chap-user need --fabric iscsi")
		}
		return spec, nil
	case "iscsi":
	default:
		return spec, usageErr("--fabric %q: want loop, iscsi or none", fab)
	}
	if (chapUser == "") != (chapFile == "") {
		return spec, usageErr("--chap-user and --chap-password-file go together")
	}
	if chapFile != "" {
		pw, err := chapSecret("--chap-password-file", chapFile)
		if err != nil {
			return spec, err
		}
		spec.CHAPPassword = pw
	}
	return spec, nil
}

// chapSecret reads a CHAP secret file (readSecretFile) for flag.
func chapSecret(flag, path string) (string, error) {
	pw, err := readSecretFile(path)
	if err != nil {
		return "", usageErr("%s: %v", flag, err)
	}
	// RFC 7143 §12.1.3 leaves the length to the target; LIO takes 12 to 255.
	if n := len(pw); n < 12 || n > 255 {
		return "", usageErr("%s: the secret must be 12 to 255 bytes, not %d", flag, n)
	}
	return pw, nil
}

// accessSpec adds to spec (from exportSpec) who may log in beyond the
// listed initiators: everyone (allowAny, which must be asked for by name
// because it exposes the disks to the whole network), and mutual CHAP,
// where the target proves itself to the initiator too.
func accessSpec(spec bridge.ExportSpec, allowAny bool, mutualUser, mutualFile string) (bridge.ExportSpec, error) {
	if spec.Fabric != "iscsi" {
		if allowAny || mutualUser != "" || mutualFile != "" {
			return spec, usageErr("--insecure-allow-any-initiator and --chap-mutual-* need --fabric iscsi")
		}
		return spec, nil
	}
	if allowAny && len(spec.Initiators) > 0 {
		return spec, usageErr("--insecure-allow-any-initiator admits every initiator: drop it or the --initiator list")
	}
	spec.AllowAnyInitiator = allowAny
	if (mutualUser == "") != (mutualFile == "") {
		return spec, usageErr("--chap-mutual-user and --chap-mutual-password-file go together")
	}
	if mutualUser == "" {
		return spec, nil
	}
	if spec.CHAPUser == "" {
		return spec, usageErr("mutual CHAP needs one-way CHAP too (--chap-user)")
	}
	pw, err := chapSecret("--chap-mutual-password-file", mutualFile)
	if err != nil {
		return spec, err
	}
	// RFC 7143 §12.1.3: the secrets of the two directions must differ.
	if pw == spec.CHAPPassword {
		return spec, usageErr("--chap-mutual-password-file: the target's secret must differ from the initiator's")
	}
	spec.MutualUser, spec.MutualPassword = mutualUser, pw
	return spec, nil
}

// nameFromPath derives a LUN name from a file name: "/srv/vm disk.img"
// gives "vm_disk".
func nameFromPath(path string) string {
	base := filepath.Base(path)
	if ext := filepath.Ext(base); ext != base {
		base = strings.TrimSuffix(base, ext)
	}
	b := []byte(base)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			b[i] = '_'
		}
	}
	name := strings.TrimLeft(string(b), ".-")
	if len(name) > bridge.MaxNameLen {
		name = name[:bridge.MaxNameLen]
	}
	if name == "" {
		name = "lun"
	}
	return name
}

// lunConfig is one LUN to serve.
type lunConfig struct {
	bridge.Options
	Spec bridge.ExportSpec
}

// daemonConfig is what export and serve run.
type daemonConfig struct {
	LUNs        []lunConfig
	Mount       string
	AllowOther  bool
	CmdTimeout  time.Duration
	MaxTransfer int64
	Configfs    string
	Workers     int
	Out         io.Writer
	// Reload, when not nil, asks for Load to be applied (serve's SIGHUP).
	Reload <-chan os.Signal
	Load   func() ([]lunConfig, error)
	// Metrics is the address of the Prometheus endpoint; empty: none.
	Metrics string
	// Targetcli offers user:lunbridge on D-Bus and serves the backstores
	// targetcli creates (targetcli.go).
	Targetcli bool
	// Gateways are the leases of LUNs that are gateways of a group
	// (cmd_gateway.go): run once the LUNs are served, stopped first.
	Gateways []*lease.Lease
}

// runDaemon serves cfg until ctx is done. reload, when not nil, delivers
// new LUN sets (serve's SIGHUP). Shutdown order: unmount the view, then
// remove every LUN (unexport, drain, remove the device, sync the file).
func runDaemon(ctx context.Context, cfg daemonConfig) error {
	log := slog.Default()
	if os.Geteuid() != 0 {
		return errors.Join(cli.Exit("lunbridge must run as root: it writes configfs and opens /dev/uio*", exitFailure), closeGateways(cfg.Gateways))
	}
	stopGateways := func() error { return closeGateways(cfg.Gateways) }
	k, err := newKernel(ctx, kernelConfig{
		Configfs:    cfg.Configfs,
		CmdTimeout:  cfg.CmdTimeout,
		MaxTransfer: cfg.MaxTransfer,
		Logger:      log,
	})
	if err != nil {
		return errors.Join(cli.Exit(err.Error(), exitFailure), stopGateways())
	}
	var kern bridge.Kernel = k
	var disc *discovery
	if cfg.Targetcli {
		disc = newDiscovery(k, cfg.Configfs, cfg.MaxTransfer, cfg.Workers, log)
		kern = disc
	}
	var view *fusefs.View
	d := bridge.NewDaemon(bridge.DaemonOptions{
		Kernel:      kern,
		Logger:      log,
		Defaults:    bridge.Options{BlockSize: 512, Workers: cfg.Workers, MaxTransfer: cfg.MaxTransfer},
		DefaultSpec: bridge.ExportSpec{Fabric: "loop"},
		OnChange: func() {
			if view != nil {
				view.Refresh()
			}
		},
	})
	viewDone := make(chan error, 1)
	stopView := func() error { return nil }
	if cfg.Mount != "" {
		view = fusefs.New(d, fusefs.Options{Mountpoint: cfg.Mount, AllowOther: cfg.AllowOther, Version: version, Logger: log})
		vctx, vcancel := context.WithCancel(context.WithoutCancel(ctx))
		go func() { viewDone <- view.Run(vctx) }()
		select {
		case <-view.Ready():
		case err := <-viewDone:
			vcancel()
			return errors.Join(fmt.Errorf("FUSE view at %s: %w", cfg.Mount, err), stopGateways(), d.Close(context.Background()))
		}
		stopView = func() error {
			vcancel()
			return <-viewDone
		}
	}
	stopMetrics, err := startMetrics(ctx, cfg.Metrics, d)
	if err != nil {
		return errors.Join(err, stopView(), stopGateways(), d.Close(context.Background()))
	}
	stopTargetcli := func() error { return nil }
	shutdown := func(err error) error {
		// Gateways first: giving up ownership drains and syncs the LUNs.
		return errors.Join(err, stopTargetcli(), stopView(), stopMetrics(), stopGateways(), d.Close(context.Background()))
	}
	if err := addLUNs(ctx, d, cfg.LUNs, cfg.Out); err != nil {
		return shutdown(err)
	}
	if len(cfg.Gateways) > 0 {
		stopGateways = runGateways(ctx, cfg.Gateways)
	}
	if disc != nil {
		stopTargetcli = startTargetcli(ctx, disc, d)
	}
	served := cfg.LUNs
	fmt.Fprintln(cfg.Out, "lunbridge: ready; SIGINT or SIGTERM to stop")
	sdNotify("READY=1")
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			sdNotify("STOPPING=1")
			return shutdown(nil)
		case err := <-viewDone:
			viewDone <- err // for stopView
			return shutdown(fmt.Errorf("FUSE view stopped: %w", err))
		case <-cfg.Reload:
			next, err := cfg.Load()
			if err != nil {
				log.Error("reload: config kept as it was", "err", err)
				continue
			}
			served = applyReload(ctx, d, served, next, cfg.Out)
		}
	}
}

// addLUNs adds each LUN and prints where it is.
func addLUNs(ctx context.Context, d *bridge.Daemon, luns []lunConfig, out io.Writer) error {
	for _, l := range luns {
		if l.Preallocate {
			l.Progress = progressFor(l.Name, out)
		}
		info, err := d.Add(ctx, l.Options, l.Spec)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: %s %s (%s, %d bytes, %d-byte blocks)\n", info.Name, info.Fabric, info.FabricPath, info.Path, info.Size, info.BlockSize)
	}
	return nil
}
