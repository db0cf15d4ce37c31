// SPDX-License-Identifier: Apache-2.0

package fabric

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeModprobe writes a modprobe that "loads" a module by creating
// /sys/module/<name> under sysfs, and fails for names in broken.
func fakeModprobe(t *testing.T, sysfs string, broken ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "modprobe")
	script := "#!/bin/sh\n"
	for _, b := range broken {
		script += "[ \"$1\" = " + b + " ] && { echo \"modprobe: FATAL: Module $1 not found\" >&2; exit 1; }\n"
	}
	script += "mkdir -p " + sysfs + "/module/$1\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadModules(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh for the fake modprobe")
	}
	root := t.TempDir()
	sysfs := filepath.Join(root, "sys")
	configfs := filepath.Join(root, "config")
	os.MkdirAll(filepath.Join(sysfs, "module", "configfs"), 0o755)
	os.MkdirAll(configfs, 0o755)
	opts := ModuleOptions{SysfsRoot: sysfs, ConfigfsRoot: configfs, NoLoad: true}

	err := LoadModules(t.Context(), opts, ModConfigfs, ModLoop)
	if err == nil || !strings.Contains(err.Error(), "tcm_loop") {
		t.Errorf("LoadModules(NoLoad) = %v, want an error naming tcm_loop", err)
	}

	opts.NoLoad = false
	opts.Modprobe = fakeModprobe(t, sysfs, ModISCSI)
	err = LoadModules(t.Context(), opts, ModLoop, ModISCSI)
	if err == nil || !strings.Contains(err.Error(), "iscsi_target_mod") || !strings.Contains(err.Error(), "not found") {
		t.Errorf("LoadModules with a broken module = %v, want an error naming it with modprobe's message", err)
	}
	if _, err := os.Stat(filepath.Join(sysfs, "module", ModLoop)); err != nil {
		t.Errorf("modprobe was not run for tcm_loop: %v", err)
	}

	// All modules present: the configfs check comes next, and a temporary
	// directory is not configfs.
	opts.NoLoad = true
	err = LoadModules(t.Context(), opts, ModConfigfs, ModLoop)
	if err == nil || !strings.Contains(err.Error(), "configfs is not mounted") {
		t.Errorf("LoadModules on a plain directory = %v, want configfs not mounted", err)
	}
}
