// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/lio"
)

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "export FILEs as LUNs of one target until SIGINT or SIGTERM",
		Description: "The FILEs become LUNs 0, 1, ... in order. On the loop fabric a FILE served before keeps\n" +
			"the LUN number it had, and a new one skips the numbers of LUNs a killed lunbridge left\n" +
			"(logged: \"nobody serves it\"); \"lunbridge list\" shows where each LUN is.",
		ArgsUsage: "FILE...",
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "name", Usage: "LUN name, once per FILE (default: from the file name)"},
			&cli.StringSliceFlag{Name: "size", Usage: "LUN size (64M, 10G, 1T), once for every FILE or once per FILE in order; creates a missing FILE sparse, grows a smaller one"},
			&cli.UintFlag{Name: "block-size", Value: lio.DefaultBlockSize, Usage: "logical block size: 512 or 4096"},
			&cli.BoolFlag{Name: "read-only", Usage: "write-protect the LUNs"},
			&cli.BoolFlag{Name: "write-through", Usage: "complete writes only once durable (WCE=0); default is write-back with SYNCHRONIZE CACHE and FUA honoured"},
			&cli.BoolFlag{Name: "preallocate", Usage: "allocate every block of the FILEs before serving"},
			&cli.BoolFlag{Name: "direct-io", Usage: "read and write aligned transfers with O_DIRECT, around the page cache"},
			&cli.StringFlag{Name: "fabric", Value: lio.DefaultFabric, Usage: "loop (a local /dev/sdX), iscsi, or none"},
			&cli.StringFlag{Name: "iqn", Usage: "iSCSI target name (default: derived from the host and the first LUN's name)"},
			&cli.StringFlag{Name: "portal", Value: lio.DefaultPortal, Usage: "iSCSI portal ADDR:PORT"},
			&cli.StringSliceFlag{Name: "initiator", Usage: "allow this initiator IQN (repeatable); without one, no initiator may log in"},
			&cli.BoolFlag{Name: "insecure-allow-any-initiator", Usage: "let EVERY initiator that reaches the portal log in and read and write the LUNs"},
			&cli.StringFlag{Name: "chap-user", Usage: "require iSCSI CHAP with this user name"},
			&cli.StringFlag{Name: "chap-password-file", Usage: "file holding the CHAP secret, mode 0600 (never given on the command line)"},
			&cli.StringFlag{Name: "chap-mutual-user", Usage: "mutual CHAP: the user name the target answers with"},
			&cli.StringFlag{Name: "chap-mutual-password-file", Usage: "mutual CHAP: file holding the target's secret, mode 0600"},
		}, append(append(gatewayFlags(), daemonFlags()...), experimentalFlags()...)...),
		Action: runExport,
	}
}

// daemonFlags are the flags export shares with serve's config file.
func daemonFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "workers", Usage: "commands per LUN that may wait on the backing store at once (blocking slots of its ring)", DefaultText: "2 x CPUs, at least 4"},
		&cli.StringFlag{Name: "mount", Value: defaultMount, Usage: "where to mount the FUSE view; empty: no view"},
		&cli.BoolFlag{Name: "mount-allow-other", Usage: "let users other than root read the FUSE view"},
		&cli.DurationFlag{Name: "cmd-timeout", Value: lio.DefaultCmdTimeout, Usage: "kernel command timeout (TCMU cmd_time_out)"},
		&cli.StringFlag{Name: "max-transfer", Value: fmt.Sprintf("%dK", lio.DefaultMaxTransfer>>10), Usage: "largest command the LUNs accept (VPD Block Limits; TCMU hw_max_sectors)"},
		&cli.StringFlag{Name: "configfs", Value: lio.DefaultConfigfs, Hidden: true},
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
	fc, err := exportConfig(c, files, names)
	if err != nil {
		return err
	}
	dc, err := fc.resolve(hostname(), readSecretFile)
	if err != nil {
		return usageErr("export: %v", err)
	}
	if dc.Tuning, err = tuningFlags(c); err != nil {
		return err
	}
	if dc.Gateways, err = openGateways(c, dc.LUNs); err != nil {
		return err
	}
	return runDaemon(c.Context, dc, daemonIO{Out: c.App.Writer, Configfs: c.String("configfs")})
}

// exportConfig turns export's flags into the config file's form: one
// target holding every FILE.
func exportConfig(c *cli.Context, files, names []string) (fileConfig, error) {
	mount := c.String("mount")
	t := targetConfig{
		Fabric:                    c.String("fabric"),
		IQN:                       c.String("iqn"),
		Initiators:                c.StringSlice("initiator"),
		InsecureAllowAnyInitiator: c.Bool("insecure-allow-any-initiator"),
		CHAPUser:                  c.String("chap-user"),
		CHAPPasswordFile:          c.String("chap-password-file"),
		CHAPMutualUser:            c.String("chap-mutual-user"),
		CHAPMutualPasswordFile:    c.String("chap-mutual-password-file"),
	}
	if t.Fabric == lio.FabricISCSI {
		t.Portal = c.String("portal")
	}
	sizes := c.StringSlice("size")
	if len(sizes) > 1 && len(sizes) != len(files) {
		return fileConfig{}, usageErr("export: %d --size flags for %d FILEs: give one for every FILE, or one per FILE", len(sizes), len(files))
	}
	seen := map[string]bool{}
	for i, f := range files {
		size := ""
		switch {
		case len(sizes) == 1:
			size = sizes[0]
		case len(sizes) > 1:
			size = sizes[i]
		}
		name := nameFromPath(f)
		if i < len(names) {
			name = names[i]
		}
		if err := bridge.ValidName(name); err != nil {
			return fileConfig{}, usageErr("%v (use --name)", err)
		}
		if seen[name] {
			return fileConfig{}, usageErr("two LUNs named %q (use --name)", name)
		}
		seen[name] = true
		t.LUNs = append(t.LUNs, lunFileConfig{
			Name:         name,
			Path:         f,
			Size:         size,
			BlockSize:    uint32(c.Uint("block-size")),
			ReadOnly:     c.Bool("read-only"),
			WriteThrough: c.Bool("write-through"),
			Preallocate:  c.Bool("preallocate"),
			DirectIO:     c.Bool("direct-io"),
		})
	}
	return fileConfig{
		Mount:           &mount,
		MountAllowOther: c.Bool("mount-allow-other"),
		CmdTimeout:      duration{c.Duration("cmd-timeout")},
		MaxTransfer:     c.String("max-transfer"),
		Workers:         c.Int("workers"),
		Metrics:         c.String("metrics"),
		Targets:         []targetConfig{t},
	}, nil
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
