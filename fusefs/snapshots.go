// SPDX-License-Identifier: Apache-2.0

package fusefs

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lunbridge/lunbridge/bridge"
)

// snapshotsName is the directory of a LUN's snapshots: one directory per
// snapshot (bridge.LUNInfo.Snapshots), each with the files of
// snapshotFiles. Snapshots are made and deleted through the LUN's ctl.
const snapshotsName = "snapshots"

// snapshotFiles render one snapshot; all are read-only.
var snapshotFiles = []struct {
	name   string
	render func(s *bridge.SnapshotInfo) string
}{
	{"state", func(s *bridge.SnapshotInfo) string {
		if s.State == bridge.SnapshotFailed && s.Reason != "" {
			return s.State + ": " + s.Reason
		}
		return s.State
	}},
	{"method", func(s *bridge.SnapshotInfo) string { return s.Method }},
	{"progress", func(s *bridge.SnapshotInfo) string { return fmt.Sprintf("%d / %d", s.Copied, s.Size) }},
	{"created", func(s *bridge.SnapshotInfo) string { return s.Created.UTC().Format(time.RFC3339Nano) }},
	{"path", func(s *bridge.SnapshotInfo) string { return s.Path }},
	{"pause_us", func(s *bridge.SnapshotInfo) string { return strconv.FormatInt(s.Pause.Microseconds(), 10) }},
}

// findSnapshot returns the snapshot called name of lun.
func findSnapshot(lun *bridge.LUNInfo, name string) (*bridge.SnapshotInfo, bool) {
	for i := range lun.Snapshots {
		if lun.Snapshots[i].Name == name {
			return &lun.Snapshots[i], true
		}
	}
	return nil, false
}

// snapshotSpec is the fileSpec of one file of snapshot snap: it renders
// from the LUN's current list, like every file of the view.
func snapshotSpec(i int, snap string) *fileSpec {
	f := snapshotFiles[i]
	return newSpec(f.name, func(_ *View, _ []bridge.LUNInfo, lun *bridge.LUNInfo) []byte {
		s, ok := findSnapshot(lun, snap)
		if !ok {
			return nil
		}
		return []byte(f.render(s) + "\n")
	}, nil)
}

// snapsDir is LUN/snapshots.
type snapsDir struct {
	fs.Inode
	v   *View
	lun string
}

var (
	_ = (fs.NodeLookuper)((*snapsDir)(nil))
	_ = (fs.NodeReaddirer)((*snapsDir)(nil))
	_ = (fs.NodeGetattrer)((*snapsDir)(nil))
)

// lunInfo returns the LUN's current description.
func lunInfo(v *View, name string) (*bridge.LUNInfo, bool) {
	return findLUN(v.luns.List(), name)
}

func (d *snapsDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if _, ok := lunInfo(d.v, d.lun); !ok {
		return syscall.ENOENT
	}
	d.v.dirAttr(&out.Attr)
	return 0
}

func (d *snapsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	lun, ok := lunInfo(d.v, d.lun)
	if !ok {
		return nil, syscall.ENOENT
	}
	if _, ok := findSnapshot(lun, name); !ok {
		if ch := d.GetChild(name); ch != nil {
			d.RmChild(name) // deleted: a new one of that name starts afresh
		}
		return nil, syscall.ENOENT
	}
	d.v.dirAttr(&out.Attr)
	if ch := d.GetChild(name); ch != nil {
		return ch, 0
	}
	return d.NewInode(ctx, &snapDir{v: d.v, lun: d.lun, snap: name}, fs.StableAttr{Mode: syscall.S_IFDIR}), 0
}

func (d *snapsDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	lun, ok := lunInfo(d.v, d.lun)
	if !ok {
		return nil, syscall.ENOENT
	}
	entries := make([]fuse.DirEntry, len(lun.Snapshots))
	for i, s := range lun.Snapshots {
		entries[i] = fuse.DirEntry{Name: s.Name, Mode: syscall.S_IFDIR}
	}
	return fs.NewListDirStream(entries), 0
}

// snapDir is LUN/snapshots/NAME.
type snapDir struct {
	fs.Inode
	v         *View
	lun, snap string
}

var (
	_ = (fs.NodeLookuper)((*snapDir)(nil))
	_ = (fs.NodeReaddirer)((*snapDir)(nil))
	_ = (fs.NodeGetattrer)((*snapDir)(nil))
)

func (d *snapDir) exists() bool {
	lun, ok := lunInfo(d.v, d.lun)
	if !ok {
		return false
	}
	_, ok = findSnapshot(lun, d.snap)
	return ok
}

func (d *snapDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if !d.exists() {
		return syscall.ENOENT
	}
	d.v.dirAttr(&out.Attr)
	return 0
}

func (d *snapDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !d.exists() {
		return nil, syscall.ENOENT
	}
	for i, f := range snapshotFiles {
		if f.name == name {
			return lookupFile(ctx, &d.Inode, d.v, d.lun, snapshotSpec(i, d.snap), out)
		}
	}
	return nil, syscall.ENOENT
}

func (d *snapDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if !d.exists() {
		return nil, syscall.ENOENT
	}
	entries := make([]fuse.DirEntry, len(snapshotFiles))
	for i, f := range snapshotFiles {
		entries[i] = fuse.DirEntry{Name: f.name, Mode: syscall.S_IFREG}
	}
	return fs.NewListDirStream(entries), 0
}

// lookupSnapshots returns the LUN directory's snapshots child.
func lookupSnapshots(ctx context.Context, d *lunDir, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !d.exists() {
		return nil, syscall.ENOENT
	}
	d.v.dirAttr(&out.Attr)
	if ch := d.GetChild(snapshotsName); ch != nil {
		return ch, 0
	}
	return d.NewInode(ctx, &snapsDir{v: d.v, lun: d.name}, fs.StableAttr{Mode: syscall.S_IFDIR}), 0
}
