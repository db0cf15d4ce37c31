// SPDX-License-Identifier: Apache-2.0

// Command lunbridge exports files as SCSI LUNs through the Linux kernel's
// TCMU (target_core_user), over the tcm_loop or iSCSI fabrics.
//
//	lunbridge export [flags] FILE...   serve files until SIGINT/SIGTERM
//	lunbridge serve --config FILE      serve a config file; SIGHUP reloads it
//	lunbridge list | stats [NAME]      show what a running daemon serves
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
)

// version is set by the linker (-X main.version=...) for releases.
var version = "dev"

// Exit codes.
const (
	exitFailure = 1 // the daemon failed
	exitUsage   = 2 // bad flags, arguments or configuration
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopTrace, err := startTrace(os.Getenv(traceEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "lunbridge:", err)
		os.Exit(exitUsage)
	}
	err = newApp(os.Stdout, os.Stderr).RunContext(ctx, os.Args)
	stopTrace()
	if err != nil {
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			if msg := err.Error(); msg != "" {
				fmt.Fprintln(os.Stderr, "lunbridge:", msg)
			}
			os.Exit(ec.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "lunbridge:", err)
		os.Exit(exitFailure)
	}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "lunbridge",
		Usage:     "export files as SCSI LUNs through Linux LIO (TCMU)",
		Version:   version,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
		},
		Before: func(c *cli.Context) error {
			return setupLogging(c.String("log-level"), c.String("log-format"), stderr)
		},
		ExitErrHandler: func(*cli.Context, error) {}, // main reports errors
		Commands: []*cli.Command{
			exportCommand(),
			serveCommand(),
			listCommand(),
			statsCommand(),
			snapshotCommand(),
			manCommand(),
			completionCommand(),
		},
	}
}

// setupLogging installs the default slog logger. Only package main picks
// handlers and levels.
func setupLogging(level, format string, w io.Writer) error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return cli.Exit(fmt.Sprintf("--log-level %q: want debug, info, warn or error", level), exitUsage)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch strings.ToLower(format) {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return cli.Exit(fmt.Sprintf("--log-format %q: want text or json", format), exitUsage)
	}
	slog.SetDefault(slog.New(h))
	return nil
}

// usageErr is a bad flag or argument: exit status 2.
func usageErr(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), exitUsage)
}
