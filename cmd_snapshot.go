// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/lunbridge/lunbridge/bridge"
)

// snapshot talks to a running daemon through its FUSE view, as an
// operator would with echo and cat: it writes "snapshot NAME" (or
// "delete-snapshot NAME") to LUN/ctl and reads LUN/snapshots/.

func snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "snapshot a LUN of a running daemon, or list or delete its snapshots",
		Description: "lunbridge snapshot LUN NAME makes FILE@NAME beside the LUN's backing file FILE,\n" +
			"a crash-consistent copy of the LUN at this instant, while the LUN stays online\n" +
			"(a reflink where the file system shares extents, else a paced background copy).\n" +
			"Export FILE@NAME read-only to serve the snapshot, writable to serve a clone.",
		ArgsUsage: "LUN [NAME]",
		Flags: append(viewFlags(),
			&cli.BoolFlag{Name: "list", Usage: "list the LUN's snapshots"},
			&cli.BoolFlag{Name: "delete", Usage: "delete the snapshot NAME"},
			&cli.StringFlag{Name: "rate", Usage: "pace of a background copy in bytes per second (\"64M\"); default 128M"},
		),
		Action: runSnapshot,
	}
}

func runSnapshot(c *cli.Context) error {
	mnt := c.String("mount")
	lun, name := c.Args().Get(0), c.Args().Get(1)
	if lun == "" {
		return usageErr("snapshot: want LUN [NAME]")
	}
	if c.Bool("list") {
		if c.NArg() != 1 || c.Bool("delete") || c.IsSet("rate") {
			return usageErr("snapshot --list: want LUN only")
		}
		return listSnapshots(c, mnt, lun)
	}
	if c.NArg() != 2 {
		return usageErr("snapshot: want LUN NAME")
	}
	line := "snapshot " + name
	switch {
	case c.Bool("delete"):
		if c.IsSet("rate") {
			return usageErr("snapshot --delete takes no --rate")
		}
		line = "delete-snapshot " + name
	case c.IsSet("rate"):
		n, err := bridge.ParseSize(c.String("rate"))
		if err != nil || n <= 0 {
			return usageErr("--rate %q: want a positive size such as 64M", c.String("rate"))
		}
		line += " rate=" + strconv.FormatInt(n, 10)
	}
	if _, err := bridge.ParseControl(line); err != nil {
		return usageErr("snapshot: %v", err)
	}
	if err := writeCtl(mnt, lun, line); err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}
	if c.Bool("delete") {
		return nil
	}
	s, err := readSnapshot(mnt, lun, name)
	if err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}
	fmt.Fprintf(c.App.Writer, "%s: %s %s, pause %s µs\n", s["path"], s["state"], s["method"], s["pause_us"])
	return nil
}

// writeCtl writes one control line to LUN/ctl of the view at mnt.
func writeCtl(mnt, lun, line string) error {
	if _, err := viewLUNs(mnt); err != nil {
		return err
	}
	p := filepath.Join(mnt, lun, "ctl")
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no LUN %q in %s", lun, mnt)
	}
	if err != nil {
		return err
	}
	_, err = f.WriteString(line + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %q refused (the daemon's log says why): %w", p, line, err)
	}
	return nil
}

// snapshotKeys are the files of a snapshot's directory, in column order.
var snapshotKeys = []string{"state", "method", "progress", "pause_us", "created", "path"}

// readSnapshot reads the files of LUN/snapshots/NAME.
func readSnapshot(mnt, lun, name string) (map[string]string, error) {
	m := map[string]string{"name": name}
	for _, k := range snapshotKeys {
		b, err := os.ReadFile(filepath.Join(mnt, lun, "snapshots", name, k))
		if err != nil {
			return nil, err
		}
		m[k] = strings.TrimSuffix(string(b), "\n")
	}
	return m, nil
}

func listSnapshots(c *cli.Context, mnt, lun string) error {
	if _, err := viewLUNs(mnt); err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}
	ents, err := os.ReadDir(filepath.Join(mnt, lun, "snapshots"))
	if errors.Is(err, fs.ErrNotExist) {
		return cli.Exit(fmt.Sprintf("no LUN %q in %s", lun, mnt), exitFailure)
	}
	if err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}
	list := []map[string]string{}
	for _, e := range ents {
		s, err := readSnapshot(mnt, lun, e.Name())
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return cli.Exit(err.Error(), exitFailure)
		}
		list = append(list, s)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tMETHOD\tPROGRESS\tPAUSE µs\tCREATED\tPATH")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s["name"], s["state"], s["method"],
			s["progress"], s["pause_us"], s["created"], s["path"])
	}
	return tw.Flush()
}
