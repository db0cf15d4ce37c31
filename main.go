// Command lunbridge exports files as SCSI LUNs through the Linux kernel's
// TCMU (target_core_user), over the tcm_loop or iSCSI fabrics.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// version is set by the linker (-X main.version=...) for releases.
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := &cli.App{
		Name:    "lunbridge",
		Usage:   "export files as SCSI LUNs through Linux LIO (TCMU)",
		Version: version,
	}
	if err := app.RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "lunbridge:", err)
		os.Exit(1)
	}
}
