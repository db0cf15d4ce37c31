// SPDX-License-Identifier: Apache-2.0

package fusefs_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/fusefs"
)

// staticLUNs is a LUNs with one LUN that accepts no commands.
type staticLUNs struct{}

func (staticLUNs) List() []bridge.LUNInfo {
	return []bridge.LUNInfo{{Name: "disk0", Path: "/srv/disk0.img", Size: 1 << 30, BlockSize: 512}}
}

func (staticLUNs) Control(ctx context.Context, name, line string) error {
	return fmt.Errorf("%s: %q: %w", name, line, bridge.ErrInvalid)
}

// Example mounts a view until SIGINT or SIGTERM. A daemon passes its
// bridge.Daemon as the LUNs and calls View.Refresh from its OnChange hook.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	v := fusefs.New(staticLUNs{}, fusefs.Options{
		Mountpoint: "/run/lunbridge",
		Version:    "lunbridge 1.0",
		Logger:     slog.Default(),
	})
	errc := make(chan error, 1)
	go func() { errc <- v.Run(ctx) }()
	select {
	case <-v.Ready():
		fmt.Println("cat /run/lunbridge/disk0/stats")
	case err := <-errc: // Run failed before mounting
		fmt.Println(err)
		return
	}
	if err := <-errc; err != nil {
		fmt.Println(err)
	}
}
