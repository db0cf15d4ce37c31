// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/fusefs"
	"github.com/lunbridge/lunbridge/lio"
)

// defaultMount is where the FUSE view is mounted.
const defaultMount = "/run/lunbridge"

// fileConfig is the one configuration type of export and serve: serve
// decodes it from the config file, export builds it from its flags, and
// both resolve it with resolve.
type fileConfig struct {
	Mount           *string        `toml:"mount"` // nil: defaultMount; "": no view
	MountAllowOther bool           `toml:"mount_allow_other"`
	CmdTimeout      duration       `toml:"cmd_timeout"`
	MaxTransfer     string         `toml:"max_transfer"`
	Workers         int            `toml:"workers"`
	Metrics         string         `toml:"metrics"` // Prometheus ADDR:PORT; empty: off
	Targets         []targetConfig `toml:"target"`
}

type targetConfig struct {
	Fabric                    string          `toml:"fabric"`
	IQN                       string          `toml:"iqn"`
	Portal                    string          `toml:"portal"`
	Initiators                []string        `toml:"initiators"`
	InsecureAllowAnyInitiator bool            `toml:"insecure_allow_any_initiator"`
	CHAPUser                  string          `toml:"chap_user"`
	CHAPPasswordFile          string          `toml:"chap_password_file"`
	CHAPMutualUser            string          `toml:"chap_mutual_user"`
	CHAPMutualPasswordFile    string          `toml:"chap_mutual_password_file"`
	LUNs                      []lunFileConfig `toml:"lun"`
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
	// The alua_* keys make the LUN one gateway of a group, like export's
	// --alua-* flags (config_gateway.go, docs/scale-out.md).
	ALUAGroup    int      `toml:"alua_group"`
	ALUAPort     int      `toml:"alua_port"`
	ALUAPeers    []string `toml:"alua_peers"`
	ALUAIdentity string   `toml:"alua_identity"`
}

// duration reads "30s" style durations from TOML.
type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	d.Duration = v
	return err
}

// lunConfig is one LUN to serve. The type is lio's, which compares two
// configurations on a reload (lio.ApplyReload, lio.LUNConfig.Same).
type lunConfig = lio.LUNConfig

// daemonConfig is a resolved fileConfig: what runDaemon serves.
type daemonConfig struct {
	LUNs        []lunConfig
	Mount       string
	AllowOther  bool
	CmdTimeout  time.Duration
	MaxTransfer int64
	Workers     int
	// Metrics is the address of the Prometheus endpoint; empty: none.
	Metrics string
	// Targetcli offers user:lunbridge on D-Bus and serves the backstores
	// targetcli creates (targetcli.Discovery); serve sets it.
	Targetcli bool
	// Gateways are the leases of LUNs that are gateways of a group
	// (gateways.go, lio.Gateways): run once the LUNs are served,
	// stopped first; nil when not a gateway.
	Gateways *lio.Gateways
	// Tuning are the experimental hidden flags of export and serve
	// (tuning.go); the zero value is the default behaviour.
	Tuning tuning
}

// resolve checks fc and fills its defaults. host names default iSCSI
// targets (lio.DefaultIQN); readSecret reads CHAP secret files
// (readSecretFile). Errors name the config key.
func (fc fileConfig) resolve(host string, readSecret func(string) (string, error)) (daemonConfig, error) {
	dc := daemonConfig{
		Mount:       defaultMount,
		AllowOther:  fc.MountAllowOther,
		CmdTimeout:  fc.CmdTimeout.Duration,
		MaxTransfer: lio.DefaultMaxTransfer,
		Workers:     fc.Workers,
		Metrics:     fc.Metrics,
	}
	if fc.Mount != nil {
		dc.Mount = *fc.Mount
	}
	if dc.CmdTimeout == 0 {
		dc.CmdTimeout = lio.DefaultCmdTimeout
	}
	if dc.CmdTimeout < time.Second {
		return dc, fmt.Errorf("cmd_timeout %v: want at least 1s", dc.CmdTimeout)
	}
	if fc.Workers < 0 {
		return dc, fmt.Errorf("workers %d: want 0 (automatic) or more", fc.Workers)
	}
	if fc.MaxTransfer != "" {
		n, err := bridge.ParseSize(fc.MaxTransfer)
		if err != nil || n < 4096 || n%4096 != 0 {
			return dc, fmt.Errorf("max_transfer %q: want a multiple of 4K such as 512K or 1M", fc.MaxTransfer)
		}
		dc.MaxTransfer = n
	}
	seen := map[string]bool{}
	specs := map[string]bridge.ExportSpec{} // by IQN
	for ti, t := range fc.Targets {
		if len(t.LUNs) == 0 {
			return dc, fmt.Errorf("target %d has no LUN", ti+1)
		}
		spec, err := t.spec(host, readSecret)
		if err != nil {
			return dc, fmt.Errorf("target %d: %w", ti+1, err)
		}
		if spec.Fabric == lio.FabricISCSI {
			if prev, ok := specs[spec.IQN]; ok {
				if err := lio.SameTarget(prev, spec); err != nil {
					return dc, fmt.Errorf("target %d: %w", ti+1, err)
				}
			}
			specs[spec.IQN] = spec
		}
		for _, l := range t.LUNs {
			if err := bridge.ValidName(l.Name); err != nil {
				return dc, err
			}
			if fusefs.ReservedName(l.Name) {
				return dc, fmt.Errorf("LUN name %q is reserved by the FUSE view", l.Name)
			}
			if seen[l.Name] {
				return dc, fmt.Errorf("two LUNs named %q", l.Name)
			}
			seen[l.Name] = true
			if l.Path == "" {
				return dc, fmt.Errorf("LUN %s has no path", l.Name)
			}
			var size int64
			if l.Size != "" {
				size, err = bridge.ParseSize(l.Size)
				switch {
				case errors.Is(err, bridge.ErrTooLarge):
					return dc, fmt.Errorf("LUN %s: size %q is %w", l.Name, l.Size, bridge.ErrTooLarge)
				case err != nil:
					return dc, fmt.Errorf("LUN %s: size %q: want a byte count such as 64M, 10G or 1T", l.Name, l.Size)
				case size == 0:
					return dc, fmt.Errorf("LUN %s: size %q: a LUN needs at least one block; leave the size out to use the file's", l.Name, l.Size)
				}
			}
			if bs := l.BlockSize; bs != 0 && bs != 512 && bs != 4096 {
				return dc, fmt.Errorf("LUN %s: block_size %d: want 512 or 4096", l.Name, bs)
			}
			group, err := l.resolveGateway()
			if err != nil {
				return dc, err
			}
			dc.LUNs = append(dc.LUNs, lunConfig{
				Group: group,
				Options: bridge.Options{
					Identity:     l.ALUAIdentity,
					Name:         l.Name,
					Path:         l.Path,
					Size:         size,
					BlockSize:    l.BlockSize,
					ReadOnly:     l.ReadOnly,
					WriteThrough: l.WriteThrough,
					Preallocate:  l.Preallocate,
					DirectIO:     l.DirectIO,
					Workers:      fc.Workers,
					MaxTransfer:  dc.MaxTransfer,
				},
				Spec: spec,
			})
		}
	}
	if err := checkIdentities(dc.LUNs); err != nil {
		return dc, err
	}
	if err := checkPaths(dc.LUNs); err != nil {
		return dc, err
	}
	return dc, nil
}

// checkPaths refuses two LUNs of one config on one file, said plainly
// here rather than as the ownership lock's refusal at start (which also
// catches the same file under two names: a link).
func checkPaths(luns []lunConfig) error {
	seen := map[string]string{}
	for _, l := range luns {
		p := filepath.Clean(l.Path)
		if other, ok := seen[p]; ok {
			return fmt.Errorf("LUNs %s and %s both export %s: one file can back one LUN", other, l.Name, l.Path)
		}
		seen[p] = l.Name
	}
	return nil
}

// spec resolves a target's fabric settings; a target without an IQN is
// named after its first LUN.
func (t targetConfig) spec(host string, readSecret func(string) (string, error)) (bridge.ExportSpec, error) {
	spec := bridge.ExportSpec{
		Fabric:            t.Fabric,
		IQN:               t.IQN,
		Portal:            t.Portal,
		Initiators:        t.Initiators,
		AllowAnyInitiator: t.InsecureAllowAnyInitiator,
		CHAPUser:          t.CHAPUser,
		MutualUser:        t.CHAPMutualUser,
	}
	secret := func(key, path string) (string, error) {
		pw, err := readSecret(path)
		if err != nil {
			return "", fmt.Errorf("%s: %w", key, err)
		}
		// RFC 7143 §12.1.3 leaves the length to the target; LIO takes 12 to 255.
		if n := len(pw); n < 12 || n > 255 {
			return "", fmt.Errorf("%s: the secret must be 12 to 255 bytes, not %d", key, n)
		}
		return pw, nil
	}
	if (t.CHAPUser == "") != (t.CHAPPasswordFile == "") {
		return spec, fmt.Errorf("chap_user and chap_password_file go together")
	}
	if (t.CHAPMutualUser == "") != (t.CHAPMutualPasswordFile == "") {
		return spec, fmt.Errorf("chap_mutual_user and chap_mutual_password_file go together")
	}
	if t.CHAPMutualUser != "" && t.CHAPUser == "" {
		return spec, fmt.Errorf("mutual CHAP needs one-way CHAP too (chap_user)")
	}
	var err error
	if t.CHAPPasswordFile != "" {
		if spec.CHAPPassword, err = secret("chap_password_file", t.CHAPPasswordFile); err != nil {
			return spec, err
		}
	}
	if t.CHAPMutualPasswordFile != "" {
		if spec.MutualPassword, err = secret("chap_mutual_password_file", t.CHAPMutualPasswordFile); err != nil {
			return spec, err
		}
		// RFC 7143 §12.1.3: the secrets of the two directions must differ.
		if spec.MutualPassword == spec.CHAPPassword {
			return spec, fmt.Errorf("chap_mutual_password_file: the target's secret must differ from the initiator's")
		}
	}
	first := ""
	if len(t.LUNs) > 0 {
		first = t.LUNs[0].Name
	}
	return lio.Resolve(spec, host, first)
}

// loadConfig reads, checks and resolves a config file.
func loadConfig(path, host string) (daemonConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return daemonConfig{}, fmt.Errorf("config: %w", err)
	}
	dc, err := parseConfig(data, host, readSecretFile)
	if err != nil {
		return dc, fmt.Errorf("config %s: %w", path, err)
	}
	return dc, nil
}

// parseConfig decodes, checks and resolves a config file's text.
func parseConfig(data []byte, host string, readSecret func(string) (string, error)) (daemonConfig, error) {
	var fc fileConfig
	md, err := toml.Decode(string(data), &fc)
	if err != nil {
		return daemonConfig{}, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		return daemonConfig{}, fmt.Errorf("unknown key %q", und[0].String())
	}
	return fc.resolve(host, readSecret)
}
