// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/lio"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve the targets and LUNs of a config file; SIGHUP reloads it",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "config", Required: true, Usage: "TOML config file (see examples/lunbridge.toml)"},
			&cli.StringFlag{Name: "configfs", Value: lio.DefaultConfigfs, Hidden: true},
		}, experimentalFlags()...),
		Action: runServe,
	}
}

func runServe(c *cli.Context) error {
	path := c.String("config")
	host := hostname()
	dc, err := loadConfig(path, host)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	// Read once: the rings of LUNs a reload adds get them too (lio.New).
	if dc.Tuning, err = tuningFlags(c); err != nil {
		return err
	}
	dc.Targetcli = true
	if dc.Gateways, err = openConfigGateways(dc.LUNs); err != nil {
		return cli.Exit(fmt.Sprintf("config %s: %v", path, err), exitUsage)
	}
	started := dc.LUNs
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return runDaemon(c.Context, dc, daemonIO{
		Out:      c.App.Writer,
		Configfs: c.String("configfs"),
		Reload:   hup,
		Load: func() (daemonConfig, error) {
			next, err := loadConfig(path, host)
			if err != nil {
				return next, err
			}
			if err := lio.CheckGatewayReload(started, next.LUNs); err != nil {
				return next, fmt.Errorf("config %s: %w", path, err)
			}
			return next, nil
		},
	})
}

// lunSet is the daemon's set of LUNs: bridge.Daemon.
type lunSet interface {
	Add(ctx context.Context, o bridge.Options, spec bridge.ExportSpec) (bridge.LUNInfo, error)
	Remove(ctx context.Context, name string) error
}

// reloadSet is lio.ApplyReload's view of the daemon: adds and removes
// print what they did, as at start.
type reloadSet struct {
	d   lunSet
	out io.Writer
}

func (r reloadSet) Add(ctx context.Context, l lunConfig) error { return addLUN(ctx, r.d, l, r.out) }

func (r reloadSet) Remove(ctx context.Context, name string) error {
	if err := r.d.Remove(ctx, name); err != nil {
		return err
	}
	fmt.Fprintf(r.out, "%s: removed\n", name)
	return nil
}
