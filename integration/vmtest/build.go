// SPDX-License-Identifier: Apache-2.0

package vmtest

import (
	"context"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Binaries for the guest are static (CGO_ENABLED=0): the guest has no libc.
// They are built once per test process into the cache (go's build cache
// makes a rebuild cheap) and renamed into place, so concurrent test
// processes never see a half-written file.

var (
	buildMu    sync.Mutex
	buildCache = map[string]buildResult{} // protected by buildMu
)

type buildResult struct {
	path string
	err  error
}

// BuildLunbridge builds the lunbridge command (the module root's main
// package) as a static binary and returns its path. Put it in the guest with
// Options.Files{"lunbridge": path}.
func BuildLunbridge(t testing.TB) string {
	t.Helper()
	return build(t, "lunbridge", "build", ".")
}

// BuildCommand builds the main package pkg (a directory relative to the
// module root such as "./internal/cmd/loopfs") as a static binary and
// returns its path.
func BuildCommand(t testing.TB, pkg string) string {
	t.Helper()
	return build(t, filepath.Base(pkg), "build", pkg)
}

// BuildTestBinary builds the tests of pkg (an import path, or a directory
// relative to the module root such as "./bridge") with `go test -c`, as a
// static binary, and returns its path.
func BuildTestBinary(t testing.TB, pkg string) string {
	t.Helper()
	name := strings.Trim(strings.NewReplacer("/", "_", ".", "_").Replace(pkg), "_") + ".test"
	return build(t, name, "test", "-c", pkg)
}

func build(t testing.TB, name string, goArgs ...string) string {
	t.Helper()
	key := strings.Join(goArgs, " ")
	buildMu.Lock()
	defer buildMu.Unlock()
	r, ok := buildCache[key]
	if !ok {
		r.path, r.err = goBuild(t.Context(), name, goArgs)
		buildCache[key] = r
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.path
}

func goBuild(ctx context.Context, name string, goArgs []string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("vmtest: build: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("vmtest: build: %w", err)
	}
	defer os.RemoveAll(tmp)
	goTool, err := exec.LookPath("go") // go test puts GOROOT/bin first in PATH
	if err != nil {
		return "", fmt.Errorf("vmtest: build: %w", err)
	}
	args := append(append([]string{}, goArgs[0]), "-o", filepath.Join(tmp, name))
	args = append(args, goArgs[1:]...)
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("vmtest: go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	// The cache may be shared by several checkouts (LUNBRIDGE_CACHE): a
	// name per module root keeps another checkout's build from replacing
	// this one while its test waits for a VM slot.
	dst := filepath.Join(dir, fmt.Sprintf("%s-%08x", name, crc32.ChecksumIEEE([]byte(root))))
	if err := os.Rename(filepath.Join(tmp, name), dst); err != nil {
		return "", fmt.Errorf("vmtest: build: %w", err)
	}
	return dst, nil
}
