package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"

	"github.com/lunbridge/lunbridge/bridge"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve the targets and LUNs of a config file; SIGHUP reloads it",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Required: true, Usage: "TOML config file (see examples/lunbridge.toml)"},
			&cli.StringFlag{Name: "configfs", Value: "/sys/kernel/config", Hidden: true},
		},
		Action: runServe,
	}
}

// fileConfig is the config file.
type fileConfig struct {
	Mount           string         `toml:"mount"`
	MountAllowOther bool           `toml:"mount_allow_other"`
	CmdTimeout      duration       `toml:"cmd_timeout"`
	MaxTransfer     string         `toml:"max_transfer"`
	Workers         int            `toml:"workers"`
	Metrics         string         `toml:"metrics"` // Prometheus ADDR:PORT; empty: off
	Targets         []targetConfig `toml:"target"`
}

type targetConfig struct {
	Fabric           string          `toml:"fabric"`
	IQN              string          `toml:"iqn"`
	Portal           string          `toml:"portal"`
	Initiators       []string        `toml:"initiators"`
	CHAPUser         string          `toml:"chap_user"`
	CHAPPasswordFile string          `toml:"chap_password_file"`
	LUNs             []lunFileConfig `toml:"lun"`

	// Access beyond the initiators listed (see accessSpec).
	InsecureAllowAnyInitiator bool   `toml:"insecure_allow_any_initiator"`
	CHAPMutualUser            string `toml:"chap_mutual_user"`
	CHAPMutualPasswordFile    string `toml:"chap_mutual_password_file"`
}

type lunFileConfig struct {
	Name         string `toml:"name"`
	Path         string `toml:"path"`
	Size         string `toml:"size"`
	BlockSize    uint32 `toml:"block_size"`
	ReadOnly     bool   `toml:"read_only"`
	WriteThrough bool   `toml:"write_through"`
	Preallocate  bool   `toml:"preallocate"`
	DirectIO     bool   `toml:"direct_io"`
}

// duration reads "30s" style durations from TOML.
type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	d.Duration = v
	return err
}

// loadConfig reads and validates a config file.
func loadConfig(path string) (fileConfig, []lunConfig, int64, error) {
	var fc fileConfig
	md, err := toml.DecodeFile(path, &fc)
	if err != nil {
		return fc, nil, 0, fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return fc, nil, 0, fmt.Errorf("config %s: unknown key %q", path, und[0].String())
	}
	if !md.IsDefined("mount") {
		fc.Mount = "/run/lunbridge"
	}
	if fc.CmdTimeout.Duration == 0 {
		fc.CmdTimeout.Duration = 30 * time.Second
	}
	maxTransfer := int64(bridge.DefaultMaxTransfer)
	if fc.MaxTransfer != "" {
		n, err := bridge.ParseSize(fc.MaxTransfer)
		if err != nil || n < 4096 || n%4096 != 0 {
			return fc, nil, 0, fmt.Errorf("config %s: max_transfer %q: want a multiple of 4K such as 512K", path, fc.MaxTransfer)
		}
		maxTransfer = n
	}
	var luns []lunConfig
	seen := map[string]bool{}
	for ti, t := range fc.Targets {
		if t.Fabric == "" {
			t.Fabric = "loop"
		}
		if t.Portal == "" && t.Fabric == "iscsi" {
			t.Portal = "0.0.0.0:3260"
		}
		spec, err := exportSpec(t.Fabric, t.IQN, t.Portal, t.Initiators, t.CHAPUser, t.CHAPPasswordFile)
		if err == nil {
			spec, err = accessSpec(spec, t.InsecureAllowAnyInitiator, t.CHAPMutualUser, t.CHAPMutualPasswordFile)
		}
		if err != nil {
			return fc, nil, 0, fmt.Errorf("config %s: target %d: %w", path, ti+1, err)
		}
		for _, l := range t.LUNs {
			if err := bridge.ValidName(l.Name); err != nil {
				return fc, nil, 0, fmt.Errorf("config %s: %w", path, err)
			}
			if seen[l.Name] {
				return fc, nil, 0, fmt.Errorf("config %s: two LUNs named %q", path, l.Name)
			}
			seen[l.Name] = true
			if l.Path == "" {
				return fc, nil, 0, fmt.Errorf("config %s: LUN %s has no path", path, l.Name)
			}
			var size int64
			if l.Size != "" {
				if size, err = bridge.ParseSize(l.Size); err != nil {
					return fc, nil, 0, fmt.Errorf("config %s: LUN %s: %w", path, l.Name, err)
				}
			}
			luns = append(luns, lunConfig{
				Options: bridge.Options{
					Name:         l.Name,
					Path:         l.Path,
					Size:         size,
					BlockSize:    l.BlockSize,
					ReadOnly:     l.ReadOnly,
					WriteThrough: l.WriteThrough,
					Preallocate:  l.Preallocate,
					DirectIO:     l.DirectIO,
					Workers:      fc.Workers,
					MaxTransfer:  maxTransfer,
				},
				Spec: spec,
			})
		}
	}
	return fc, luns, maxTransfer, nil
}

func runServe(c *cli.Context) error {
	path := c.String("config")
	fc, luns, maxTransfer, err := loadConfig(path)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return runDaemon(c.Context, daemonConfig{
		LUNs:        luns,
		Mount:       fc.Mount,
		AllowOther:  fc.MountAllowOther,
		CmdTimeout:  fc.CmdTimeout.Duration,
		MaxTransfer: maxTransfer,
		Configfs:    c.String("configfs"),
		Workers:     fc.Workers,
		Out:         c.App.Writer,
		Metrics:     fc.Metrics,
		Targetcli:   true,
		Reload:      hup,
		Load: func() ([]lunConfig, error) {
			_, luns, _, err := loadConfig(path)
			return luns, err
		},
	})
}

// applyReload moves the daemon from the LUNs in cur to those in next:
// removed LUNs go, new ones come, changed ones are removed and added again,
// and the others are not touched. It returns the LUN set now served.
func applyReload(ctx context.Context, d *bridge.Daemon, cur, next []lunConfig, out io.Writer) []lunConfig {
	log := slog.Default()
	old := map[string]lunConfig{}
	for _, l := range cur {
		old[l.Name] = l
	}
	want := map[string]lunConfig{}
	for _, l := range next {
		want[l.Name] = l
	}
	var served []lunConfig
	for _, l := range cur {
		n, keep := want[l.Name]
		if keep && sameLUN(l, n) {
			served = append(served, l)
			continue
		}
		if err := d.Remove(ctx, l.Name); err != nil {
			log.Error("reload: remove", "lun", l.Name, "err", err)
			served = append(served, l)
			continue
		}
		fmt.Fprintf(out, "%s: removed\n", l.Name)
	}
	for _, l := range next {
		if o, ok := old[l.Name]; ok && sameLUN(o, l) {
			continue
		}
		if err := addLUNs(ctx, d, []lunConfig{l}, out); err != nil {
			log.Error("reload: add", "lun", l.Name, "err", err)
			continue
		}
		served = append(served, l)
	}
	log.Info("config reloaded", "luns", len(served))
	return served
}

func sameLUN(a, b lunConfig) bool {
	a.Progress, b.Progress = nil, nil
	return reflect.DeepEqual(a, b)
}
