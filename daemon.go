// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/fusefs"
	"github.com/lunbridge/lunbridge/lio"
	"github.com/lunbridge/lunbridge/targetcli"
)

// daemonIO is how runDaemon talks to the outside: where it prints, which
// configfs it drives, and (serve) when and what to reload.
type daemonIO struct {
	Out      io.Writer
	Configfs string
	// Reload, when not nil, asks for Load to be applied (serve's SIGHUP).
	Reload <-chan os.Signal
	Load   func() (daemonConfig, error)
}

// hostname names default iSCSI targets; without one they are named
// after localhost.
func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		slog.Warn("no host name: default iSCSI target names use localhost", "err", err)
		return ""
	}
	return h
}

// runDaemon serves cfg until ctx is done. The FUSE view and the LUN
// manager run in one errgroup: either one failing stops both. Shutdown
// order: unmount the view, then remove every LUN (unexport, drain,
// remove the device, sync the file).
func runDaemon(ctx context.Context, cfg daemonConfig, dio daemonIO) error {
	log := slog.Default()
	if os.Geteuid() != 0 {
		return errors.Join(cli.Exit("lunbridge must run as root: it writes configfs and opens /dev/uio*", exitFailure), cfg.Gateways.Close())
	}
	// Before any kernel object exists (see bridge.MarkIOFlusher).
	if cfg.Tuning.TimerSlack > 0 {
		if err := setTimerSlack(cfg.Tuning.TimerSlack); err != nil {
			return errors.Join(cli.Exit(err.Error(), exitFailure), cfg.Gateways.Close())
		}
	}
	if err := bridge.MarkIOFlusher(); err != nil {
		log.Debug("PR_SET_IO_FLUSHER not set on every thread; each worker marks its own", "err", err)
	}
	k, err := lio.New(ctx, lio.Config{
		ConfigfsRoot: dio.Configfs,
		NameLockDir:  lio.DefaultNameLockDir,
		CmdTimeout:   cfg.CmdTimeout,
		MaxTransfer:  cfg.MaxTransfer,
		Hostname:     hostname(),
		Logger:       log,
	})
	if err != nil {
		return errors.Join(cli.Exit(err.Error(), exitFailure), cfg.Gateways.Close())
	}
	var kern bridge.Kernel = k
	var disc *targetcli.Discovery
	if cfg.Targetcli {
		disc = targetcli.New(k, targetcli.Config{
			ConfigfsRoot: dio.Configfs,
			MaxTransfer:  cfg.MaxTransfer,
			Workers:      cfg.Workers,
			Logger:       log,
		})
		kern = disc
	}
	var view *fusefs.View
	d := bridge.NewDaemon(bridge.DaemonOptions{
		Kernel:      kern,
		Logger:      log,
		Defaults:    bridge.Options{BlockSize: lio.DefaultBlockSize, Workers: cfg.Workers, MaxTransfer: cfg.MaxTransfer},
		DefaultSpec: bridge.ExportSpec{Fabric: lio.FabricLoop},
		OnChange: func() {
			if view != nil {
				view.Refresh()
			}
		},
	})
	stopMetrics, err := startMetrics(ctx, cfg.Metrics, d)
	if err != nil {
		return errors.Join(err, cfg.Gateways.Close(), d.Close(context.Background()))
	}
	g, gctx := errgroup.WithContext(ctx)
	// The view outlives ctx: it is unmounted first, by vcancel.
	vctx, vcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer vcancel()
	// The view is mounted once the LUNs are up: a start that fails on a
	// LUN (a file another daemon holds, a bad size) never mounts it.
	lunsUp := make(chan struct{})
	var ready <-chan struct{}
	if cfg.Mount != "" {
		view = fusefs.New(d, fusefs.Options{Mountpoint: cfg.Mount, AllowOther: cfg.AllowOther, Version: version, Logger: log})
		ready = view.Ready()
		g.Go(func() error {
			select {
			case <-lunsUp:
			case <-gctx.Done():
				return nil
			}
			err := view.Run(vctx)
			if vctx.Err() == nil {
				return fmt.Errorf("FUSE view at %s stopped: %w", cfg.Mount, err)
			}
			return err
		})
	} else {
		none := make(chan struct{})
		close(none)
		ready = none
	}
	g.Go(func() error {
		return manageLUNs(gctx, d, disc, cfg.LUNs, cfg.Gateways, dio, lunsUp, ready)
	})
	<-gctx.Done()
	if ctx.Err() != nil {
		log.Info("shutting down")
		sdNotify("STOPPING=1")
	}
	vcancel()
	err = g.Wait()
	return errors.Join(err, stopMetrics(), d.Close(context.Background()))
}

// manageLUNs adds the LUNs, closes lunsUp and waits for the view to be
// ready, starts serving the backstores targetcli makes (disc, when not
// nil), then applies reloads until ctx is done.
//
// The gateway leases run once the LUNs are served and stop first, before
// the LUNs go (giving up ownership drains and syncs the LUNs); leases
// that never ran are closed.
func manageLUNs(ctx context.Context, d *bridge.Daemon, disc *targetcli.Discovery, luns []lunConfig, gateways *lio.Gateways, dio daemonIO, lunsUp chan<- struct{}, viewReady <-chan struct{}) (err error) {
	stopGateways := gateways.Close
	defer func() { err = errors.Join(err, stopGateways()) }()
	if err := addLUNs(ctx, d, luns, dio.Out); err != nil {
		return err
	}
	close(lunsUp)
	select {
	case <-viewReady:
	case <-ctx.Done():
		return nil
	}
	if gateways != nil {
		stopGateways = gateways.Run(ctx)
	}
	if disc != nil {
		stopTargetcli := disc.Start(ctx, d)
		defer func() {
			if err := stopTargetcli(); err != nil {
				slog.Error("targetcli interop", "err", err)
			}
		}()
	}
	served := luns
	fmt.Fprintln(dio.Out, "lunbridge: ready; SIGINT or SIGTERM to stop")
	sdNotify("READY=1")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-dio.Reload:
			next, err := dio.Load()
			if err != nil {
				slog.Error("reload: nothing changed", "err", err)
				continue
			}
			var rerr error
			served, rerr = lio.ApplyReload(ctx, reloadSet{d, dio.Out}, served, next.LUNs)
			if rerr != nil {
				slog.Error("reload: some changes were not applied; those LUNs are as they were", "err", rerr)
				continue
			}
			slog.Info("config reloaded", "luns", len(served))
		}
	}
}

// addLUNs adds each LUN and prints where it is.
func addLUNs(ctx context.Context, d lunSet, luns []lunConfig, out io.Writer) error {
	for _, l := range luns {
		if err := addLUN(ctx, d, l, out); err != nil {
			return err
		}
	}
	return nil
}

func addLUN(ctx context.Context, d lunSet, l lunConfig, out io.Writer) error {
	if l.Preallocate {
		l.Progress = progressFor(l.Name, out)
	}
	info, err := d.Add(ctx, l.Options, l.Spec)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: %s %s (%s, %d bytes, %d-byte blocks)\n", info.Name, info.Fabric, info.FabricPath, info.Path, info.Size, info.BlockSize)
	return nil
}
