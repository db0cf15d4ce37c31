// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func runApp(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := newApp(&out, &errOut).Run(append([]string{"lunbridge"}, args...)); err != nil {
		t.Fatalf("lunbridge %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

func TestManPage(t *testing.T) {
	page := runApp(t, "man")
	for _, want := range []string{".TH lunbridge 8", "export", "serve", `\fB--metrics\fP`, `\fB--read-only\fP`} {
		if !strings.Contains(page, want) {
			t.Errorf("man page lacks %q", want)
		}
	}
	for _, hidden := range []string{"completion", "\n.SH man"} {
		if strings.Contains(page, hidden) {
			t.Errorf("man page shows the hidden %q", hidden)
		}
	}
	if man, err := exec.LookPath("man"); err == nil {
		f := filepath.Join(t.TempDir(), "lunbridge.8")
		if err := os.WriteFile(f, []byte(page), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(man, "-l", "--warnings", f)
		cmd.Env = append(os.Environ(), "MANPAGER=cat", "MANWIDTH=80")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "export files as SCSI LUNs") {
			t.Errorf("man -l: %v\n%s", err, out)
		}
	}
}

// TestBashCompletion sources the generated script in bash and completes a
// few command lines with it.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script := filepath.Join(t.TempDir(), "lunbridge.bash")
	if err := os.WriteFile(script, []byte(runApp(t, "completion", "bash")), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "disk.img"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line string // words; the last is completed
		want []string
		not  []string
	}{
		{"lunbridge ''", []string{"export", "serve", "--log-level"}, []string{"man", "completion"}},
		{"lunbridge ex", []string{"export"}, nil},
		{"lunbridge export --me", []string{"--metrics"}, nil},
		{"lunbridge --log-level debug serve --", []string{"--config"}, []string{"--metrics"}},
		{"lunbridge export --size 1G di", []string{"disk.img"}, nil},
	} {
		t.Run(tc.line, func(t *testing.T) {
			cmd := exec.Command(bash, "-c", `source "$1"; COMP_WORDS=(`+tc.line+`); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _lunbridge; printf '%s\n' "${COMPREPLY[@]}"`, "bash", script)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			got := strings.Fields(string(out))
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("completions %v lack %q", got, w)
				}
			}
			for _, w := range tc.not {
				if slices.Contains(got, w) {
					t.Errorf("completions %v include %q", got, w)
				}
			}
		})
	}
}

func TestFishCompletion(t *testing.T) {
	script := runApp(t, "completion", "fish")
	if !strings.Contains(script, "complete -c lunbridge") || !strings.Contains(script, "metrics") {
		t.Errorf("fish completion:\n%s", script)
	}
}
