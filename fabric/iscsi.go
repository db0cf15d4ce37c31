// SPDX-License-Identifier: Apache-2.0

package fabric

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/lunbridge/lunbridge/internal/configfs"
)

// DefaultPortal is the iSCSI network portal: every address, port 3260.
const DefaultPortal = "0.0.0.0:3260"

// maxCHAPLen bounds CHAP user names and secrets: iscsi_node_auth keeps
// them in char[256] fields (MAX_USER_LEN, MAX_PASS_LEN) and the tpg auth
// store truncates silently.
const maxCHAPLen = 255

// ISCSITarget is an iSCSI target (iscsi_target_mod) with one portal
// group, tpgt_1.
//
// Access is denied by default: with no Initiators the portal group has
// no ACL and generate_node_acls=0, so no initiator may log in (as
// targetcli makes them). With Initiators, only those IQNs may log in (an
// ACL each, every LUN mapped read-write). Only AllowAnyInitiator runs the
// group in LIO's demo mode (generate_node_acls=1, cache_dynamic_acls=1,
// demo_mode_write_protect=0): any initiator may log in and sees every
// LUN read-write. CHAP, when CHAPUser is set, is required
// (attrib/authentication=1); the credentials go to each ACL's auth/
// directory, or in demo mode to tpgt_1/auth/, which Linux uses for the
// dynamically generated ACLs (tpg_demo_auth).
type ISCSITarget struct {
	// IQN names the target (ValidateIQN); DefaultIQN derives one.
	IQN string
	// Portal is the listening address, "ip:port" or "[ipv6]:port"
	// (DefaultPortal when empty).
	Portal string
	// Initiators lists the initiator IQNs allowed; empty: none.
	Initiators []string
	// AllowAnyInitiator opens the target to every initiator (demo mode);
	// it excludes Initiators.
	AllowAnyInitiator bool
	// CHAPUser and CHAPPassword enable one-way CHAP. The password is
	// never logged nor put in errors.
	CHAPUser     string
	CHAPPassword string
	// MutualUser and MutualPassword also make the target authenticate
	// itself to the initiator (mutual CHAP); they need CHAPUser.
	MutualUser     string
	MutualPassword string
	// ConfigfsRoot defaults to /sys/kernel/config.
	ConfigfsRoot string

	// FS drives configfs and sysfs; nil: the real file system.
	FS configfs.FS

	mu      sync.Mutex
	base    journal         // protected by mu: wwn, tpgt, acls, np
	luns    map[int]journal // protected by mu
	enabled bool            // protected by mu: this target enabled tpgt_1
}

func (t *ISCSITarget) fs() fsys { return configfs.Or(t.FS) }

func (t *ISCSITarget) tpg() string {
	root := t.ConfigfsRoot
	if root == "" {
		root = DefaultConfigfsRoot
	}
	return filepath.Join(root, "target", "iscsi", t.IQN, "tpgt_1")
}

func (t *ISCSITarget) portal() string {
	if t.Portal == "" {
		return DefaultPortal
	}
	return t.Portal
}

// Validate checks names, portal and credentials; AddLUN calls it before
// anything is written.
func (t *ISCSITarget) Validate() error {
	if err := ValidateIQN(t.IQN); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(t.portal())
	if err != nil {
		return fmt.Errorf("fabric: portal %q: %w", t.portal(), err)
	}
	if net.ParseIP(host) == nil {
		return fmt.Errorf("fabric: portal %q: %q is not an IP address", t.portal(), host)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("fabric: portal %q: bad port", t.portal())
	}
	if t.AllowAnyInitiator && len(t.Initiators) > 0 {
		return errors.New("fabric: initiators listed on a target open to any initiator")
	}
	seen := map[string]bool{}
	for _, i := range t.Initiators {
		if err := ValidateIQN(i); err != nil {
			return fmt.Errorf("fabric: initiator: %w", err)
		}
		if seen[i] {
			return fmt.Errorf("fabric: initiator %s listed twice", i)
		}
		seen[i] = true
	}
	if (t.CHAPUser == "") != (t.CHAPPassword == "") {
		return errors.New("fabric: CHAP needs both a user and a password")
	}
	if (t.MutualUser == "") != (t.MutualPassword == "") {
		return errors.New("fabric: mutual CHAP needs both a user and a password")
	}
	if t.MutualUser != "" && t.CHAPUser == "" {
		return errors.New("fabric: mutual CHAP needs one-way CHAP too")
	}
	for _, s := range []string{t.CHAPUser, t.CHAPPassword, t.MutualUser, t.MutualPassword} {
		if len(s) > maxCHAPLen {
			return fmt.Errorf("fabric: CHAP credential longer than %d bytes", maxCHAPLen)
		}
		for _, c := range []byte(s) {
			// The kernel stores the write verbatim: a newline would
			// become part of the secret.
			if c < 0x20 || c == 0x7f {
				return errors.New("fabric: CHAP credential contains a control byte")
			}
		}
		if s == "NULL" {
			return errors.New(`fabric: "NULL" clears a CHAP credential in configfs`)
		}
	}
	return nil
}

// create makes the target up to (not including) enable. Called with mu
// held, when base is empty.
func (t *ISCSITarget) create() error {
	fsys := t.fs()
	iscsi := filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(t.tpg()))), "iscsi")
	// target/iscsi appears when it is first made (see LoopTarget.AddLUN).
	if err := fsys.Mkdir(iscsi); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("fabric: mkdir %s: %w (is iscsi_target_mod loaded?)", iscsi, err)
	}
	c := cfs{fsys: fsys, j: &t.base}
	tpg := t.tpg()
	for _, d := range []string{filepath.Dir(tpg), tpg} {
		found, err := c.mkdir(d)
		if err != nil {
			return err
		}
		if found {
			return fmt.Errorf("fabric: %s already exists: %w", d, fs.ErrExist)
		}
	}
	attr := func(name string) string { return filepath.Join(tpg, "attrib", name) }
	open := t.AllowAnyInitiator
	auth := "0"
	if t.CHAPUser != "" {
		auth = "1"
	}
	writes := []struct{ path, value string }{
		{attr("authentication"), auth},
		{attr("generate_node_acls"), boolStr(open)},
		{attr("cache_dynamic_acls"), boolStr(open)},
		{attr("demo_mode_write_protect"), "0"},
	}
	for _, w := range writes {
		if err := c.write(w.path, w.value, ""); err != nil {
			return err
		}
	}
	if open && t.CHAPUser != "" {
		if err := t.writeAuth(c, filepath.Join(tpg, "auth")); err != nil {
			return err
		}
	}
	for _, i := range t.Initiators {
		acl := filepath.Join(tpg, "acls", i)
		if _, err := c.mkdir(acl); err != nil {
			return err
		}
		if t.CHAPUser != "" {
			if err := t.writeAuth(c, filepath.Join(acl, "auth")); err != nil {
				return err
			}
		}
	}
	_, err := c.mkdir(filepath.Join(tpg, "np", t.portal()))
	return err
}

// writeAuth writes the CHAP credentials into an auth/ directory.
func (t *ISCSITarget) writeAuth(c cfs, dir string) error {
	creds := []struct{ name, value string }{
		{"userid", t.CHAPUser}, {"password", t.CHAPPassword},
	}
	if t.MutualUser != "" {
		creds = append(creds,
			struct{ name, value string }{"userid_mutual", t.MutualUser},
			struct{ name, value string }{"password_mutual", t.MutualPassword})
	}
	for _, cr := range creds {
		if err := c.writeSecret(filepath.Join(dir, cr.name), cr.value); err != nil {
			return err
		}
	}
	return nil
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// AddLUN exports the backstore at backstorePath as LUN lun and returns
// the iSCSI URL of the LUN for the portal address
// (iscsi://<portal>/<iqn>/<lun>).
//
// The first call creates the target: target/iscsi/<IQN>/tpgt_1, its
// attributes (authentication, generate_node_acls, cache_dynamic_acls,
// demo_mode_write_protect), CHAP credentials, one acls/<initiator> per
// allowed initiator, and np/<Portal>. Each call then makes lun/lun_<lun>,
// links the backstore into it, maps it in every ACL
// (acls/<i>/lun_<lun>/lunbridge -> lun/lun_<lun>), and enables the portal
// group if this target has not yet. On failure what the call created is
// removed again. The target must not exist beforehand: an existing one is
// an error wrapping fs.ErrExist (two owners would remove each other's
// state).
func (t *ISCSITarget) AddLUN(ctx context.Context, lun int, backstorePath string) (_ string, err error) {
	if err := t.Validate(); err != nil {
		return "", err
	}
	if lun < 0 || lun > maxLUN {
		return "", fmt.Errorf("fabric: LUN %d out of range 0..%d", lun, maxLUN)
	}
	if !filepath.IsAbs(backstorePath) {
		return "", fmt.Errorf("fabric: backstore path %q is not absolute", backstorePath)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.luns[lun]; ok {
		return "", fmt.Errorf("fabric: iSCSI %s LUN %d: %w", t.IQN, lun, fs.ErrExist)
	}
	fsys := t.fs()
	// What this call creates is journaled as it goes: t.base for the
	// target (when this call creates it), lj for the LUN. On any error
	// both are undone, newest first, so that a failed AddLUN leaves
	// configfs as it found it.
	var lj journal
	created := false
	defer func() {
		if err != nil {
			err = errors.Join(err, lj.undo(fsys))
			if created {
				err = errors.Join(err, t.base.undo(fsys))
				t.base = nil
			}
		}
	}()
	if len(t.base) == 0 {
		created = true
		if err := t.create(); err != nil {
			return "", err
		}
	}
	c := cfs{fsys: fsys, j: &lj}
	tpg := t.tpg()
	name := "lun_" + strconv.Itoa(lun)
	dir := filepath.Join(tpg, "lun", name)
	steps := func() error {
		if _, err := c.mkdir(dir); err != nil {
			return err
		}
		if err := c.symlink(backstorePath, filepath.Join(dir, "lunbridge")); err != nil {
			return err
		}
		for _, i := range t.Initiators {
			mapped := filepath.Join(tpg, "acls", i, name)
			if _, err := c.mkdir(mapped); err != nil {
				return err
			}
			if err := c.symlink(dir, filepath.Join(mapped, "lunbridge")); err != nil {
				return err
			}
		}
		if !t.enabled {
			if err := c.write(filepath.Join(tpg, "enable"), "1", ""); err != nil {
				return err
			}
		}
		return nil
	}
	if err := steps(); err != nil {
		return "", err
	}
	if !t.enabled {
		t.enabled = true
		// Disable first on teardown, so no new logins race the removal.
		t.base = append(t.base, step{kind: opWrite, path: filepath.Join(tpg, "enable"), value: "0"})
	}
	if t.luns == nil {
		t.luns = map[int]journal{}
	}
	t.luns[lun] = lj
	return fmt.Sprintf("iscsi://%s/%s/%d", t.portal(), t.IQN, lun), nil
}

// RemoveLUN removes LUN lun: its mapping in every ACL, its backstore
// link and its directory. Sessions see the LUN go away.
func (t *ISCSITarget) RemoveLUN(lun int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return removeLUN(t.fs(), t.luns, lun, "iSCSI "+t.IQN)
}

// Remove tears the whole target down in reverse order of creation:
// disable the portal group, remove every LUN (ACL mappings, links,
// directories), the portal, the ACLs, tpgt_1 and the IQN directory.
// configfs is left as found. Missing entries are skipped; errors are
// joined.
func (t *ISCSITarget) Remove() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	fsys := t.fs()
	// Disable before removing LUNs.
	errs := []error{t.disable(fsys)}
	errs = append(errs, removeAll(fsys, &t.luns, &t.base))
	return errors.Join(errs...)
}

// Disable writes 0 to the portal group's enable: LIO closes every
// session of the target and admits no login, while its LUNs, ACLs and
// portal stay. An initiator sees its connection fail, a transport (path)
// error that dm-multipath retries on another path, where unlinking a LUN
// under a logged-in session has LIO's virtual LUN 0 answer it with DATA
// PROTECT (a target error, not retried). Disable a target before its
// LUNs go when initiators may still use it. A target this ISCSITarget
// did not enable is left alone; a later AddLUN enables it again.
func (t *ISCSITarget) Disable() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.disable(t.fs())
}

// disable undoes the enable step, the newest in base when this target
// enabled the group. Called with mu held.
func (t *ISCSITarget) disable(fsys fsys) error {
	if !t.enabled {
		return nil
	}
	var err error
	if n := len(t.base); n > 0 && t.base[n-1].kind == opWrite {
		err = t.base[n-1:].undo(fsys)
		t.base = t.base[:n-1]
	}
	t.enabled = false
	return err
}

// purgeTarget removes a whole fabric target directory (target/iscsi/<iqn>)
// whatever it holds, leaves first: each portal group is disabled, then
// its ACLs' mapped LUNs, ACLs, portals, LUN links and LUNs are removed,
// then the group, then the target. A missing target is not an error.
func purgeTarget(fsys fsys, dir string) error {
	tpgs, err := fsys.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fabric: purge %s: %w", dir, err)
	}
	var j journal // built in creation order, undone in reverse
	for _, name := range tpgs {
		if !strings.HasPrefix(name, "tpgt_") {
			continue // fabric_statistics and other default groups
		}
		tpg := filepath.Join(dir, name)
		j = append(j, step{kind: opRmdir, path: tpg})
		for _, sub := range []string{"lun", "np", "acls"} {
			ents, err := fsys.ReadDir(filepath.Join(tpg, sub))
			if err != nil {
				continue
			}
			for _, e := range ents {
				p := filepath.Join(tpg, sub, e)
				j = append(j, step{kind: opRmdir, path: p})
				switch sub {
				case "lun":
					j = appendLinks(fsys, j, p)
				case "acls":
					// Mapped LUNs are the lun_N directories of an ACL.
					mapped, _ := fsys.ReadDir(p)
					for _, m := range mapped {
						if mp := filepath.Join(p, m); strings.HasPrefix(m, "lun_") {
							j = append(j, step{kind: opRmdir, path: mp})
							j = appendLinks(fsys, j, mp)
						}
					}
				}
			}
		}
		// Newest step, so undone first: disable the group (when enabled)
		// before its ACLs, portals and LUNs go.
		if en, err := fsys.ReadFile(filepath.Join(tpg, "enable")); err == nil && strings.TrimSpace(en) == "1" {
			j = append(j, step{kind: opWrite, path: filepath.Join(tpg, "enable"), value: "0"})
		}
	}
	// Undone newest first: enable=0, ACL mappings and ACLs (before the
	// LUNs they point at), portals, LUN links and LUNs, the group, then
	// the target itself.
	if err := j.undo(fsys); err != nil {
		return err
	}
	return journal{{kind: opRmdir, path: dir}}.undo(fsys)
}

// appendLinks records every symlink in dir for removal.
func appendLinks(fsys fsys, j journal, dir string) journal {
	names, _ := fsys.ReadDir(dir)
	for _, n := range names {
		p := filepath.Join(dir, n)
		if _, err := fsys.Readlink(p); err == nil {
			j = append(j, step{kind: opUnlink, path: p})
		}
	}
	return j
}
