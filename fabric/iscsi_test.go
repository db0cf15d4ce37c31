// SPDX-License-Identifier: Apache-2.0

package fabric

import (
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const (
	testIQN  = "iqn.2003-01.org.linux-iscsi.host:lunbridge.disk0"
	testInit = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-inq"
	testSecr = "s3cret-pass-word"
)

func (k fakeKernel) iscsi() *ISCSITarget {
	return &ISCSITarget{IQN: testIQN, ConfigfsRoot: k.Configfs, FS: k}
}

// With no initiators listed the target admits nobody: no ACL, and no
// ACLs generated at login (generate_node_acls=0).
func TestISCSIDenyByDefault(t *testing.T) {
	k := newFakeKernel(t)
	it := k.iscsi()
	if _, err := it.AddLUN(t.Context(), 0, k.backstore(0)); err != nil {
		t.Fatal(err)
	}
	defer it.Remove()
	tpg := "config/target/iscsi/" + testIQN + "/tpgt_1"
	log := k.takeLog()
	for _, w := range []string{
		"write " + tpg + "/attrib/generate_node_acls=0",
		"write " + tpg + "/attrib/cache_dynamic_acls=0",
	} {
		if !slices.Contains(log, w) {
			t.Errorf("operations lack %q: %q", w, log)
		}
	}
	for _, l := range log {
		if strings.Contains(l, "/acls/") {
			t.Errorf("an ACL was made with no initiator listed: %q", l)
		}
	}
}

// Listing initiators on a target open to all is a contradiction.
func TestISCSIAllowAnyWithInitiators(t *testing.T) {
	k := newFakeKernel(t)
	before := k.tree(t)
	it := k.iscsi()
	it.AllowAnyInitiator = true
	it.Initiators = []string{testInit}
	if _, err := it.AddLUN(t.Context(), 0, k.backstore(0)); err == nil {
		t.Fatal("AddLUN with AllowAnyInitiator and Initiators succeeded")
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs after a refused AddLUN:\n got %q\nwant %q", after, before)
	}
}

func TestISCSIOpenAccess(t *testing.T) {
	k := newFakeKernel(t)
	before := k.tree(t)
	it := k.iscsi()
	it.AllowAnyInitiator = true
	url, err := it.AddLUN(t.Context(), 0, k.backstore(0))
	if err != nil {
		t.Fatal(err)
	}
	if want := "iscsi://0.0.0.0:3260/" + testIQN + "/0"; url != want {
		t.Errorf("AddLUN = %q, want %q", url, want)
	}
	tpg := "config/target/iscsi/" + testIQN + "/tpgt_1"
	want := []string{
		"mkdir config/target/iscsi/" + testIQN,
		"mkdir " + tpg,
		"write " + tpg + "/attrib/authentication=0",
		"write " + tpg + "/attrib/generate_node_acls=1",
		"write " + tpg + "/attrib/cache_dynamic_acls=1",
		"write " + tpg + "/attrib/demo_mode_write_protect=0",
		"mkdir " + tpg + "/np/0.0.0.0:3260",
		"mkdir " + tpg + "/lun/lun_0",
		"link " + tpg + "/lun/lun_0/lunbridge -> config/target/core/fileio_0/disk0",
		"write " + tpg + "/enable=1",
	}
	if got := k.takeLog(); !slices.Equal(got, want) {
		t.Errorf("AddLUN operations:\n got %q\nwant %q", got, want)
	}
	if _, err := it.AddLUN(t.Context(), 1, k.backstore(1)); err != nil {
		t.Fatal(err)
	}
	want = []string{
		"mkdir " + tpg + "/lun/lun_1",
		"link " + tpg + "/lun/lun_1/lunbridge -> config/target/core/fileio_0/disk1",
	}
	if got := k.takeLog(); !slices.Equal(got, want) {
		t.Errorf("second AddLUN operations:\n got %q\nwant %q", got, want)
	}
	if err := it.Remove(); err != nil {
		t.Fatal(err)
	}
	want = []string{
		"write " + tpg + "/enable=0",
		"unlink " + tpg + "/lun/lun_1/lunbridge",
		"rmdir " + tpg + "/lun/lun_1",
		"unlink " + tpg + "/lun/lun_0/lunbridge",
		"rmdir " + tpg + "/lun/lun_0",
		"rmdir " + tpg + "/np/0.0.0.0:3260",
		"rmdir " + tpg,
		"rmdir config/target/iscsi/" + testIQN,
	}
	if got := k.takeLog(); !slices.Equal(got, want) {
		t.Errorf("Remove operations:\n got %q\nwant %q", got, want)
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs after Remove:\n got %q\nwant %q", after, before)
	}
}

func TestISCSIACLAndCHAP(t *testing.T) {
	k := newFakeKernel(t)
	before := k.tree(t)
	it := k.iscsi()
	it.Portal = "127.0.0.1:3261"
	it.Initiators = []string{testInit, "iqn.1994-05.com.redhat:abc"}
	it.CHAPUser, it.CHAPPassword = "user", testSecr
	it.MutualUser, it.MutualPassword = "target", "other-secret-12"
	if _, err := it.AddLUN(t.Context(), 2, k.backstore(0)); err != nil {
		t.Fatal(err)
	}
	tpg := "config/target/iscsi/" + testIQN + "/tpgt_1"
	a0 := tpg + "/acls/" + testInit
	a1 := tpg + "/acls/iqn.1994-05.com.redhat:abc"
	auth := func(acl string) []string {
		return []string{
			"write " + acl + "/auth/userid=user",
			"write " + acl + "/auth/password=" + testSecr,
			"write " + acl + "/auth/userid_mutual=target",
			"write " + acl + "/auth/password_mutual=other-secret-12",
		}
	}
	want := []string{
		"mkdir config/target/iscsi/" + testIQN,
		"mkdir " + tpg,
		"write " + tpg + "/attrib/authentication=1",
		"write " + tpg + "/attrib/generate_node_acls=0",
		"write " + tpg + "/attrib/cache_dynamic_acls=0",
		"write " + tpg + "/attrib/demo_mode_write_protect=0",
		"mkdir " + a0,
	}
	want = append(want, auth(a0)...)
	want = append(want, "mkdir "+a1)
	want = append(want, auth(a1)...)
	want = append(want,
		"mkdir "+tpg+"/np/127.0.0.1:3261",
		"mkdir "+tpg+"/lun/lun_2",
		"link "+tpg+"/lun/lun_2/lunbridge -> config/target/core/fileio_0/disk0",
		"mkdir "+a0+"/lun_2",
		"link "+a0+"/lun_2/lunbridge -> "+tpg+"/lun/lun_2",
		"mkdir "+a1+"/lun_2",
		"link "+a1+"/lun_2/lunbridge -> "+tpg+"/lun/lun_2",
		"write "+tpg+"/enable=1",
	)
	if got := k.takeLog(); !slices.Equal(got, want) {
		t.Errorf("AddLUN operations:\n got %q\nwant %q", got, want)
	}
	if err := it.Remove(); err != nil {
		t.Fatal(err)
	}
	want = []string{
		"write " + tpg + "/enable=0",
		"unlink " + a1 + "/lun_2/lunbridge",
		"rmdir " + a1 + "/lun_2",
		"unlink " + a0 + "/lun_2/lunbridge",
		"rmdir " + a0 + "/lun_2",
		"unlink " + tpg + "/lun/lun_2/lunbridge",
		"rmdir " + tpg + "/lun/lun_2",
		"rmdir " + tpg + "/np/127.0.0.1:3261",
		"rmdir " + a1,
		"rmdir " + a0,
		"rmdir " + tpg,
		"rmdir config/target/iscsi/" + testIQN,
	}
	if got := k.takeLog(); !slices.Equal(got, want) {
		t.Errorf("Remove operations:\n got %q\nwant %q", got, want)
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs after Remove:\n got %q\nwant %q", after, before)
	}
}

// In demo mode the credentials go to tpgt_1/auth (tpg_demo_auth).
func TestISCSIDemoCHAP(t *testing.T) {
	k := newFakeKernel(t)
	it := k.iscsi()
	it.AllowAnyInitiator = true
	it.CHAPUser, it.CHAPPassword = "user", testSecr
	if _, err := it.AddLUN(t.Context(), 0, k.backstore(0)); err != nil {
		t.Fatal(err)
	}
	defer it.Remove()
	tpg := "config/target/iscsi/" + testIQN + "/tpgt_1"
	log := k.takeLog()
	for _, w := range []string{
		"write " + tpg + "/attrib/authentication=1",
		"write " + tpg + "/attrib/generate_node_acls=1",
		"write " + tpg + "/auth/userid=user",
		"write " + tpg + "/auth/password=" + testSecr,
	} {
		if !slices.Contains(log, w) {
			t.Errorf("operations lack %q: %q", w, log)
		}
	}
	for _, l := range log {
		if strings.Contains(l, "_mutual") {
			t.Errorf("mutual credentials written without MutualUser: %q", l)
		}
	}
}

// A failed credential write neither leaks the secret nor leaves state.
func TestISCSIFailureRollsBackAndHidesSecret(t *testing.T) {
	k := newFakeKernel(t)
	before := k.tree(t)
	k.SetFailWrite("auth/password")
	it := k.iscsi()
	it.Initiators = []string{testInit}
	it.CHAPUser, it.CHAPPassword = "user", testSecr
	_, err := it.AddLUN(t.Context(), 0, k.backstore(0))
	if err == nil {
		t.Fatal("AddLUN succeeded")
	}
	if strings.Contains(err.Error(), testSecr) {
		t.Errorf("error reveals the CHAP secret: %v", err)
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs after failure:\n got %q\nwant %q", after, before)
	}
	// The enable write failing after the LUN was made also rolls back.
	k.SetFailWrite("tpgt_1/enable")
	if _, err := it.AddLUN(t.Context(), 0, k.backstore(0)); err == nil {
		t.Fatal("AddLUN succeeded")
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs after failure:\n got %q\nwant %q", after, before)
	}
}

func TestISCSIExistingTarget(t *testing.T) {
	k := newFakeKernel(t)
	if err := k.Mkdir(filepath.Join(k.Configfs, "target", "iscsi", testIQN)); err != nil {
		t.Fatal(err)
	}
	k.takeLog()
	before := k.tree(t)
	if _, err := k.iscsi().AddLUN(t.Context(), 0, k.backstore(0)); !errors.Is(err, fs.ErrExist) {
		t.Errorf("AddLUN on an existing IQN = %v, want ErrExist", err)
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs after failure:\n got %q\nwant %q", after, before)
	}
}

func TestISCSIValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*ISCSITarget)
	}{
		{"bad IQN", func(i *ISCSITarget) { i.IQN = "iqn.2003-13.org.x:y" }},
		{"portal without port", func(i *ISCSITarget) { i.Portal = "0.0.0.0" }},
		{"portal host name", func(i *ISCSITarget) { i.Portal = "localhost:3260" }},
		{"portal port 0", func(i *ISCSITarget) { i.Portal = "0.0.0.0:0" }},
		{"bad initiator", func(i *ISCSITarget) { i.Initiators = []string{"initiator"} }},
		{"duplicate initiator", func(i *ISCSITarget) { i.Initiators = []string{testInit, testInit} }},
		{"user without password", func(i *ISCSITarget) { i.CHAPUser = "u" }},
		{"password without user", func(i *ISCSITarget) { i.CHAPPassword = "p" }},
		{"mutual without one-way", func(i *ISCSITarget) { i.MutualUser, i.MutualPassword = "u", "p" }},
		{"newline in secret", func(i *ISCSITarget) { i.CHAPUser, i.CHAPPassword = "u", "p\n" }},
		{"NULL user", func(i *ISCSITarget) { i.CHAPUser, i.CHAPPassword = "NULL", "p" }},
		{"long secret", func(i *ISCSITarget) { i.CHAPUser, i.CHAPPassword = "u", strings.Repeat("p", 256) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newFakeKernel(t)
			it := k.iscsi()
			tc.edit(it)
			if _, err := it.AddLUN(t.Context(), 0, k.backstore(0)); err == nil {
				t.Error("AddLUN succeeded")
			}
			if got := k.takeLog(); len(got) != 0 {
				t.Errorf("invalid target changed configfs: %q", got)
			}
		})
	}
	k := newFakeKernel(t)
	it := k.iscsi()
	it.Portal = "[::]:3260"
	if _, err := it.AddLUN(t.Context(), 0, k.backstore(0)); err != nil {
		t.Errorf("AddLUN with an IPv6 portal = %v", err)
	}
	it.Remove()
}

// A target left by a crashed run (enabled, with ACLs, mapped LUNs, portal
// and LUNs) is refused by AddLUN; RemoveStaleISCSI tears it down, leaves
// first, and the target is built afresh; the new target's Remove then
// leaves configfs as it was before the crashed run.
func TestISCSIAdopt(t *testing.T) {
	k := newFakeKernel(t)
	before := k.tree(t)
	crashed := k.iscsi()
	crashed.Initiators = []string{testInit}
	crashed.CHAPUser, crashed.CHAPPassword = "user", testSecr
	for lun := range 2 {
		if _, err := crashed.AddLUN(t.Context(), lun, k.backstore(lun)); err != nil {
			t.Fatal(err)
		}
	}
	// crashed is abandoned without Remove, as after SIGKILL.
	k.takeLog()

	it := k.iscsi()
	if _, err := it.AddLUN(t.Context(), 0, k.backstore(0)); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("AddLUN over a leftover target without Adopt = %v, want ErrExist", err)
	}
	k.takeLog()
	if err := RemoveStaleISCSI(k, k.Configfs, testIQN, func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	it.Initiators = []string{testInit}
	it.CHAPUser, it.CHAPPassword = "user", testSecr
	if _, err := it.AddLUN(t.Context(), 0, k.backstore(0)); err != nil {
		t.Fatalf("AddLUN after RemoveStaleISCSI = %v", err)
	}
	tpg := "config/target/iscsi/" + testIQN + "/tpgt_1"
	acl := tpg + "/acls/" + testInit
	log := k.takeLog()
	purge := []string{
		"write " + tpg + "/enable=0",
		"unlink " + acl + "/lun_1/lunbridge",
		"rmdir " + acl + "/lun_1",
		"unlink " + acl + "/lun_0/lunbridge",
		"rmdir " + acl + "/lun_0",
		"rmdir " + acl,
		"rmdir " + tpg + "/np/0.0.0.0:3260",
		"unlink " + tpg + "/lun/lun_1/lunbridge",
		"rmdir " + tpg + "/lun/lun_1",
		"unlink " + tpg + "/lun/lun_0/lunbridge",
		"rmdir " + tpg + "/lun/lun_0",
		"rmdir " + tpg,
		"rmdir config/target/iscsi/" + testIQN,
		"mkdir config/target/iscsi/" + testIQN,
	}
	if len(log) < len(purge) || !slices.Equal(log[:len(purge)], purge) {
		t.Errorf("RemoveStaleISCSI then AddLUN operations:\n got %q\nwant prefix %q", log, purge)
	}
	if err := it.Remove(); err != nil {
		t.Fatal(err)
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs after Remove:\n got %q\nwant %q", after, before)
	}
}
