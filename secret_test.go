// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode, data string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		// WriteFile's mode passes through the umask; set it exactly.
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(write("target", 0o600, "via-a-symlink-ok\n"), link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want, wantErr string
	}{
		{"0600", write("ok", 0o600, "0123456789abcdef\n"), "0123456789abcdef", ""},
		{"0400 crlf", write("ro", 0o400, "0123456789abcdef\r\n"), "0123456789abcdef", ""},
		{"world-readable", write("world", 0o644, "0123456789abcdef"), "", "mode 0644"},
		{"group-readable", write("group", 0o640, "0123456789abcdef"), "", "must not be readable"},
		{"world-writable", write("ww", 0o602, "0123456789abcdef"), "", "chmod 600"},
		{"fifo", fifo, "", "not a regular file"},
		{"directory", dir, "", "not a regular file"},
		{"missing", filepath.Join(dir, "none"), "", "no such file"},
		{"too long", write("long", 0o600, strings.Repeat("x", 5000)), "", "longer than"},
		// The checks apply to the file the link names.
		{"symlink to a 0600 file", link, "via-a-symlink-ok", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readSecretFile(tc.path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("readSecretFile(%s) = %q, %v; want an error with %q", tc.name, got, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "0123456789abcdef") {
					t.Errorf("error reveals the secret: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("readSecretFile(%s) = %q, %v; want %q", tc.name, got, err, tc.want)
			}
		})
	}
}

// A secret file owned by another user is refused even with mode 0600:
// that user could rewrite it. Needs root to chown.
func TestReadSecretFileOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	p := filepath.Join(t.TempDir(), "theirs")
	if err := os.WriteFile(p, []byte("0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := readSecretFile(p); err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
		t.Errorf("readSecretFile of a file owned by uid 4242 = %v, want refused", err)
	}
}

func TestAccessSpec(t *testing.T) {
	dir := t.TempDir()
	secret := func(name, s string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	initSecret := "initiator-secret-1"
	initFile := secret("init", initSecret, 0o600)
	tgtFile := secret("tgt", "target-secret-22", 0o600)
	sameFile := secret("same", initSecret, 0o600)
	openFile := secret("open", "target-secret-22", 0o644)
	iscsi := targetConfig{Fabric: "iscsi", CHAPUser: "u", CHAPPasswordFile: initFile,
		LUNs: []lunFileConfig{{Name: "a", Path: "/a"}}}
	listed := iscsi
	listed.Initiators = []string{"iqn.2026-11.org.example:host"}
	for _, tc := range []struct {
		name       string
		t          targetConfig
		any        bool
		user, file string
		wantErr    string
	}{
		{"deny by default", iscsi, false, "", "", ""},
		{"allow any", iscsi, true, "", "", ""},
		{"allow any and a list", listed, true, "", "", "open to any initiator"},
		{"allow any on loop", targetConfig{Fabric: "loop"}, true, "", "", "need the iscsi fabric"},
		{"mutual", listed, false, "tgt", tgtFile, ""},
		{"mutual without file", listed, false, "tgt", "", "go together"},
		{"mutual without one-way", targetConfig{Fabric: "iscsi"}, false, "tgt", tgtFile, "one-way CHAP too"},
		{"mutual same secret", listed, false, "tgt", sameFile, "must differ"},
		{"mutual world-readable", listed, false, "tgt", openFile, "mode 0644"},
		{"one-way world-readable", targetConfig{Fabric: "iscsi", CHAPUser: "u", CHAPPasswordFile: openFile}, false, "", "", "mode 0644"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.t.InsecureAllowAnyInitiator = tc.any
			tc.t.CHAPMutualUser, tc.t.CHAPMutualPasswordFile = tc.user, tc.file
			got, err := tc.t.spec("host1", readSecretFile)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("spec = %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.AllowAnyInitiator != tc.any || got.MutualUser != tc.user {
				t.Errorf("spec = %+v, want AllowAnyInitiator %v, MutualUser %q", got, tc.any, tc.user)
			}
			if tc.user != "" && got.MutualPassword != "target-secret-22" {
				t.Errorf("spec: mutual secret not read from %s", tc.file)
			}
		})
	}
}

// The config file's access keys reach the export spec; no initiators and
// no insecure key means nobody may log in.
func TestLoadConfigAccess(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	initFile, tgtFile := write("init", "initiator-secret-1"), write("tgt", "target-secret-22")
	cfg := write("c.toml", `
mount = ""
[[target]]
fabric = "iscsi"
iqn = "iqn.2026-11.org.example:deny"
  [[target.lun]]
  name = "deny"
  path = "/srv/deny.img"
[[target]]
fabric = "iscsi"
iqn = "iqn.2026-11.org.example:any"
insecure_allow_any_initiator = true
  [[target.lun]]
  name = "any"
  path = "/srv/any.img"
[[target]]
fabric = "iscsi"
iqn = "iqn.2026-11.org.example:mutual"
initiators = ["iqn.2026-11.org.example:host"]
chap_user = "u"
chap_password_file = "`+initFile+`"
chap_mutual_user = "t"
chap_mutual_password_file = "`+tgtFile+`"
  [[target.lun]]
  name = "mutual"
  path = "/srv/mutual.img"
`)
	dc, err := loadConfig(cfg, "host1")
	if err != nil {
		t.Fatal(err)
	}
	luns := dc.LUNs
	if len(luns) != 3 {
		t.Fatalf("loadConfig: %d LUNs, want 3", len(luns))
	}
	deny, open, mutual := luns[0].Spec, luns[1].Spec, luns[2].Spec
	if deny.AllowAnyInitiator || len(deny.Initiators) != 0 {
		t.Errorf("target without initiators: %+v, want no initiator and AllowAnyInitiator false", deny)
	}
	if !open.AllowAnyInitiator {
		t.Errorf("insecure_allow_any_initiator = true: AllowAnyInitiator false")
	}
	if mutual.MutualUser != "t" || mutual.MutualPassword != "target-secret-22" || mutual.CHAPPassword != "initiator-secret-1" {
		t.Errorf("mutual CHAP target: user %q, secrets read %v/%v", mutual.MutualUser,
			mutual.MutualPassword == "target-secret-22", mutual.CHAPPassword == "initiator-secret-1")
	}
}
