// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

// list and stats read a running daemon's FUSE view: the view is the
// daemon's one public interface, and these commands are what an operator
// would do with cat.

func viewFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "mount", Value: "/run/lunbridge", Usage: "the daemon's FUSE view"},
		&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"},
	}
}

func listCommand() *cli.Command {
	return &cli.Command{
		Name:   "list",
		Usage:  "list the LUNs a running daemon serves",
		Flags:  viewFlags(),
		Action: func(c *cli.Context) error { return showLUNs(c, false) },
	}
}

func statsCommand() *cli.Command {
	return &cli.Command{
		Name:      "stats",
		Usage:     "show the counters of a running daemon's LUNs",
		ArgsUsage: "[NAME]",
		Flags:     viewFlags(),
		Action:    func(c *cli.Context) error { return showLUNs(c, true) },
	}
}

// lunView is what the view shows of one LUN.
type lunView struct {
	Name  string            `json:"name"`
	Info  map[string]string `json:"info"`
	Stats map[string]uint64 `json:"stats,omitempty"`
}

func showLUNs(c *cli.Context, stats bool) error {
	mnt := c.String("mount")
	names, err := viewLUNs(mnt)
	if err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}
	if c.NArg() > 1 {
		return usageErr("stats: at most one NAME")
	}
	if want := c.Args().First(); want != "" {
		if !slices.Contains(names, want) {
			return cli.Exit(fmt.Sprintf("no LUN %q in %s", want, mnt), exitFailure)
		}
		names = []string{want}
	}
	var luns []lunView
	for _, n := range names {
		lv, err := readLUN(mnt, n, stats)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return cli.Exit(err.Error(), exitFailure)
		}
		luns = append(luns, lv)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if luns == nil {
			luns = []lunView{}
		}
		return enc.Encode(luns)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
	if stats {
		fmt.Fprintln(tw, "NAME\tREAD OPS\tREAD MiB\tWRITE OPS\tWRITE MiB\tSYNC\tUNMAP\tERRORS\tIN FLIGHT\tUPTIME")
		for _, l := range luns {
			s := l.Stats
			fmt.Fprintf(tw, "%s\t%d\t%.1f\t%d\t%.1f\t%d\t%d\t%d\t%d\t%ds\n", l.Name,
				s["read_ops"], mib(s["read_bytes"]), s["write_ops"], mib(s["write_bytes"]),
				s["sync_ops"], s["unmap_ops"], s["total_errors"], s["in_flight"], s["uptime_seconds"])
		}
	} else {
		fmt.Fprintln(tw, "NAME\tSTATE\tSIZE\tBLOCK\tFABRIC\tWHERE\tPATH")
		for _, l := range luns {
			i := l.Info
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Name, i["state"], humanSize(i["size"]),
				i["block_size"], i["fabric"], i["fabric_path"], i["path"])
		}
	}
	return tw.Flush()
}

// viewLUNs returns the LUN directories of the view at mnt.
func viewLUNs(mnt string) ([]string, error) {
	if _, err := os.Stat(filepath.Join(mnt, "version")); err != nil {
		return nil, fmt.Errorf("no lunbridge view at %s (is the daemon running? --mount): %w", mnt, err)
	}
	ents, err := os.ReadDir(mnt)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func readLUN(mnt, name string, stats bool) (lunView, error) {
	lv := lunView{Name: name, Info: map[string]string{}}
	b, err := os.ReadFile(filepath.Join(mnt, name, "info"))
	if err != nil {
		return lv, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok {
			lv.Info[k] = v
		}
	}
	if !stats {
		return lv, nil
	}
	b, err = os.ReadFile(filepath.Join(mnt, name, "stats.json"))
	if err != nil {
		return lv, err
	}
	if err := json.Unmarshal(b, &lv.Stats); err != nil {
		return lv, fmt.Errorf("%s/%s/stats.json: %w", mnt, name, err)
	}
	return lv, nil
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// humanSize shows a byte count with a binary suffix: "64M", "1.5G".
// It uses bridge.ParseSize's one-letter suffixes, so list's column reads
// like the sizes in configs and flags; go-humanize's IBytes writes "79 MiB"
// (a space and an IEC suffix), and for 15 lines no dependency is worth it,
// so it stays by hand (issue 15).
func humanSize(s string) string {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return s
	}
	units := "KMGTP"
	v, u := float64(n), -1
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if u < 0 {
		return s
	}
	return strconv.FormatFloat(v, 'g', 4, 64) + string(units[u])
}
