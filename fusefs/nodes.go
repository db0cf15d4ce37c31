// SPDX-License-Identifier: Apache-2.0

package fusefs

import (
	"context"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lunbridge/lunbridge/bridge"
)

// rootNode is the mount's root: the files in rootFiles plus one directory
// per LUN, looked up in LUNs.List on every access.
type rootNode struct {
	fs.Inode
	v *View
}

var (
	_ = (fs.NodeLookuper)((*rootNode)(nil))
	_ = (fs.NodeReaddirer)((*rootNode)(nil))
	_ = (fs.NodeGetattrer)((*rootNode)(nil))
)

func (r *rootNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r.v.dirAttr(&out.Attr)
	return 0
}

func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if spec := findSpec(rootFiles, name); spec != nil {
		return lookupFile(ctx, &r.Inode, r.v, "", spec, out)
	}
	if _, ok := findLUN(r.v.luns.List(), name); !ok {
		// Gone: forget the directory node too, so a LUN created later
		// under the same name starts afresh.
		if ch := r.GetChild(name); ch != nil {
			r.RmChild(name)
		}
		return nil, syscall.ENOENT
	}
	r.v.dirAttr(&out.Attr)
	if ch := r.GetChild(name); ch != nil {
		if _, ok := ch.Operations().(*lunDir); ok {
			return ch, 0
		}
	}
	d := &lunDir{v: r.v, name: name}
	return r.NewInode(ctx, d, fs.StableAttr{Mode: syscall.S_IFDIR}), 0
}

func (r *rootNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	list := r.v.luns.List()
	entries := make([]fuse.DirEntry, 0, len(rootFiles)+len(list))
	for _, s := range rootFiles {
		entries = append(entries, fuse.DirEntry{Name: s.name, Mode: syscall.S_IFREG})
	}
	for _, l := range list {
		if findSpec(rootFiles, l.Name) != nil {
			continue // shadowed; export refuses such names
		}
		entries = append(entries, fuse.DirEntry{Name: l.Name, Mode: syscall.S_IFDIR})
	}
	return fs.NewListDirStream(entries), 0
}

// notifyLoop invalidates the kernel's entries for LUNs that came or went,
// each time Refresh is called, until ctx is done. It runs in its own
// goroutine because a notification must not be sent from inside a FUSE
// request that may hold the directory's lock in the kernel, and Refresh is
// typically called from LUNs.Control, inside a write to /luns.
func (r *rootNode) notifyLoop(ctx context.Context) {
	known := lunNames(r.v.luns.List())
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.v.refresh:
		}
		now := lunNames(r.v.luns.List())
		for name, ch := range r.Children() {
			if _, ok := ch.Operations().(*lunDir); !ok || now[name] {
				continue
			}
			r.RmChild(name)
			// ENOENT means the kernel had no entry cached: nothing to do.
			if e := r.NotifyDelete(name, ch); e != 0 && e != syscall.ENOENT {
				r.v.log.Debug("fusefs: notify delete", "lun", name, "err", e)
			}
		}
		for name := range now {
			if known[name] {
				continue
			}
			// Drops a negative entry the kernel may hold for the name.
			if e := r.NotifyEntry(name); e != 0 && e != syscall.ENOENT {
				r.v.log.Debug("fusefs: notify entry", "lun", name, "err", e)
			}
		}
		known = now
	}
}

func lunNames(list []bridge.LUNInfo) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, l := range list {
		m[l.Name] = true
	}
	return m
}

// findLUN returns the LUN called name in list.
func findLUN(list []bridge.LUNInfo, name string) (*bridge.LUNInfo, bool) {
	for i := range list {
		if list[i].Name == name {
			return &list[i], true
		}
	}
	return nil, false
}

// lunDir is the directory of one LUN. It holds only the name: every
// operation looks the LUN up again, so a removed LUN's directory answers
// ENOENT even to a process that still has it as its working directory.
type lunDir struct {
	fs.Inode
	v    *View
	name string
}

var (
	_ = (fs.NodeLookuper)((*lunDir)(nil))
	_ = (fs.NodeReaddirer)((*lunDir)(nil))
	_ = (fs.NodeGetattrer)((*lunDir)(nil))
)

func (d *lunDir) exists() bool {
	_, ok := findLUN(d.v.luns.List(), d.name)
	return ok
}

func (d *lunDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if !d.exists() {
		return syscall.ENOENT
	}
	d.v.dirAttr(&out.Attr)
	return 0
}

func (d *lunDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if name == snapshotsName {
		return lookupSnapshots(ctx, d, out)
	}
	spec := findSpec(lunFiles, name)
	if spec == nil {
		return nil, syscall.ENOENT
	}
	return lookupFile(ctx, &d.Inode, d.v, d.name, spec, out)
}

func (d *lunDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if !d.exists() {
		return nil, syscall.ENOENT
	}
	entries := make([]fuse.DirEntry, len(lunFiles), len(lunFiles)+1)
	for i, s := range lunFiles {
		entries[i] = fuse.DirEntry{Name: s.name, Mode: syscall.S_IFREG}
	}
	entries = append(entries, fuse.DirEntry{Name: snapshotsName, Mode: syscall.S_IFDIR})
	return fs.NewListDirStream(entries), 0
}

// lookupFile returns parent's child for spec, creating it if needed, and
// fills out with its attributes.
func lookupFile(ctx context.Context, parent *fs.Inode, v *View, lun string, spec *fileSpec, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if ch := parent.GetChild(spec.name); ch != nil {
		if f, ok := ch.Operations().(*file); ok {
			return ch, f.attr(nil, &out.Attr)
		}
	}
	f := &file{v: v, lun: lun, spec: spec}
	if e := f.attr(nil, &out.Attr); e != 0 {
		return nil, e
	}
	return parent.NewInode(ctx, f, fs.StableAttr{Mode: syscall.S_IFREG}), 0
}

// dirAttr fills a directory's attributes. Directories cannot be changed
// through the view, so they are 0555.
func (v *View) dirAttr(a *fuse.Attr) {
	a.Mode = syscall.S_IFDIR | 0o555
	a.Nlink = 2
	a.Owner = fuse.Owner{Uid: v.uid, Gid: v.gid}
	now := time.Now()
	a.SetTimes(&now, &now, &now)
}

// file is one file of the view; spec says what it shows and accepts. lun is
// empty for the files at the root.
type file struct {
	fs.Inode
	v    *View
	lun  string
	spec *fileSpec
}

var (
	_ = (fs.NodeOpener)((*file)(nil))
	_ = (fs.NodeGetattrer)((*file)(nil))
	_ = (fs.NodeSetattrer)((*file)(nil))
)

// snapshot renders the file's content from a fresh LUNs.List.
func (f *file) snapshot() ([]byte, syscall.Errno) {
	list := f.v.luns.List()
	var lun *bridge.LUNInfo
	if f.lun != "" {
		var ok bool
		if lun, ok = findLUN(list, f.lun); !ok {
			return nil, syscall.ENOENT
		}
	}
	if f.spec.render == nil {
		return nil, 0
	}
	return f.spec.render(f.v, list, lun), 0
}

// attr fills a's attributes. The size is that of h's snapshot, or of a
// fresh one when h is nil, so tools that trust st_size see the content
// they will read.
func (f *file) attr(h *handle, a *fuse.Attr) syscall.Errno {
	var size int
	if h != nil && h.readable {
		size = len(h.data)
	} else {
		data, e := f.snapshot()
		if e != 0 {
			return e
		}
		size = len(data)
	}
	a.Mode = syscall.S_IFREG | f.spec.mode
	a.Nlink = 1
	a.Size = uint64(size)
	a.Owner = fuse.Owner{Uid: f.v.uid, Gid: f.v.gid}
	now := time.Now()
	a.SetTimes(&now, &now, &now)
	return 0
}

func (f *file) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	h, _ := fh.(*handle)
	return f.attr(h, &out.Attr)
}

// Setattr accepts only the truncation to size 0 that a shell's ">"
// redirection asks for (O_TRUNC; the kernel adds the time updates that go
// with it), on a writable file. It changes nothing, since every write is a
// command on its own. Ownership and mode cannot be changed.
func (f *file) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	const owner = fuse.FATTR_MODE | fuse.FATTR_UID | fuse.FATTR_GID
	size, ok := in.GetSize()
	if in.Valid&owner != 0 || !ok || size != 0 {
		return syscall.EPERM
	}
	if f.spec.parse == nil {
		return syscall.EACCES
	}
	h, _ := fh.(*handle)
	return f.attr(h, &out.Attr)
}

// Open snapshots the content of a readable file into the handle, so that
// every read through it is consistent, and opens it with direct I/O, so
// the page cache never serves stale content and every write(2) reaches
// Write as one request. The access mode is checked against the file's
// mode bits here because the kernel lets root through regardless.
func (f *file) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	h := &handle{f: f}
	switch flags & syscall.O_ACCMODE {
	case syscall.O_RDONLY:
		h.readable = true
	case syscall.O_WRONLY:
		h.writable = true
	default:
		h.readable, h.writable = true, true
	}
	if (h.readable && f.spec.render == nil) || (h.writable && f.spec.parse == nil) {
		return nil, 0, syscall.EACCES
	}
	data, e := f.snapshot() // also checks that the LUN still exists
	if e != 0 {
		return nil, 0, e
	}
	if h.readable {
		h.data = data
	}
	return h, fuse.FOPEN_DIRECT_IO, 0
}

// handle is an open file: the snapshot taken at open for reading, and the
// command executor for writing.
type handle struct {
	f                  *file
	readable, writable bool
	data               []byte // the snapshot; valid if readable
}

var (
	_ = (fs.FileReader)((*handle)(nil))
	_ = (fs.FileWriter)((*handle)(nil))
)

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), int64(len(h.data)))
	return fuse.ReadResultData(h.data[off:end]), 0
}

// Write executes data as one command line. The offset is ignored: each
// write(2) is a command of its own, whatever came before it.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f := h.f
	path := f.spec.name
	if f.lun != "" {
		path = f.lun + "/" + path
	}
	if err := f.exec(ctx, data); err != nil {
		f.v.log.Warn("fusefs: write rejected", "path", path, "line", string(data), "err", err)
		return 0, errno(err)
	}
	f.v.log.Info("fusefs: write", "path", path, "line", string(data))
	return uint32(len(data)), 0
}

// exec parses data with the file's grammar and hands the resulting
// canonical command to LUNs.Control.
func (f *file) exec(ctx context.Context, data []byte) error {
	var lun *bridge.LUNInfo
	if f.lun != "" {
		var ok bool
		if lun, ok = findLUN(f.v.luns.List(), f.lun); !ok {
			return errNoLUN(f.lun)
		}
	}
	cmd, err := f.spec.parse(string(data), lun)
	if err != nil || cmd == "" {
		return err // cmd == "": nothing to do (the size is already right)
	}
	return f.v.luns.Control(ctx, f.lun, cmd)
}
