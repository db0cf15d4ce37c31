// SPDX-License-Identifier: Apache-2.0

// Command debcopyright writes the Debian copyright file (DEP-5,
// https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/) of
// a Go binary: one paragraph for the program's own code, one for the Go
// standard library and runtime, and one for every module that the
// binary's build information lists (what "go version -m BINARY" prints),
// each with the license found in the module's LICENSE file in the module
// cache. scripts/package.sh runs it on the binary it packages, so the
// list cannot drift from what is compiled in.
//
//	go run ./internal/cmd/debcopyright -binary BIN -license LICENSE \
//		-modcache "$(go env GOMODCACHE)" -goroot "$(go env GOROOT)" \
//		-copyright "2026 lunbridge developers" ...
//
// It fails (exit 1, nothing written) when a module has no license file,
// more than one, or a text the strict classifier (classify.go) does not
// know word for word: a new dependency cannot slip into the package with
// its license unlisted.
package main

import (
	"bytes"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime/debug"
	"sort"
	"strings"
)

func main() {
	var c config
	flag.StringVar(&c.binary, "binary", "", "the Go binary whose modules to list (required)")
	flag.StringVar(&c.license, "license", "LICENSE", "the program's own license file")
	flag.StringVar(&c.modCache, "modcache", "", "the Go module cache, `go env GOMODCACHE` (required)")
	flag.StringVar(&c.goRoot, "goroot", "", "the Go tree the binary was built with, `go env GOROOT` (required)")
	flag.StringVar(&c.name, "name", "", "Upstream-Name (required)")
	flag.StringVar(&c.contact, "contact", "", "Upstream-Contact")
	flag.StringVar(&c.source, "source", "", "Source (the upstream URL)")
	flag.StringVar(&c.copyright, "copyright", "", "the program's Copyright field, e.g. \"2026 NAME\" (required)")
	flag.StringVar(&c.installed, "installed", "", "where the package installs the binary, for the comments (default: -binary)")
	flag.Parse()
	if c.binary == "" || c.modCache == "" || c.goRoot == "" || c.name == "" || c.copyright == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if c.installed == "" {
		c.installed = c.binary
	}
	var out bytes.Buffer
	if err := run(&out, c); err != nil {
		fmt.Fprintln(os.Stderr, "debcopyright:", err)
		os.Exit(1)
	}
	if _, err := os.Stdout.Write(out.Bytes()); err != nil {
		fmt.Fprintln(os.Stderr, "debcopyright:", err)
		os.Exit(1)
	}
}

type config struct {
	binary, license, modCache, goRoot string
	name, contact, source, copyright  string
	installed                         string
}

func run(w io.Writer, c config) error {
	info, err := buildinfo.ReadFile(c.binary)
	if err != nil {
		return fmt.Errorf("read build info: %w", err)
	}
	own, err := os.ReadFile(c.license)
	if err != nil {
		return err
	}
	return generate(w, c, info, string(own), os.DirFS(c.modCache), os.DirFS(c.goRoot))
}

// A paragraph is one Files paragraph of the copyright file.
type paragraph struct {
	files     string
	copyright []string
	license   string // SPDX identifier
	text      string // the license text; empty for Apache-2.0 (common-licenses)
	comment   string
}

// generate writes the copyright file for the binary described by info.
// modCache and goRoot are the module cache and the Go tree, as file
// systems so that tests can fake them.
func generate(w io.Writer, c config, info *debug.BuildInfo, ownLicense string, modCache, goRoot fs.FS) error {
	ownID, err := Classify(ownLicense)
	if err != nil {
		return fmt.Errorf("%s: %w", c.license, err)
	}
	paras := []paragraph{{files: "*", copyright: []string{c.copyright}, license: ownID, text: textFor(ownID, ownLicense)}}

	// The standard library and runtime are linked into every Go program.
	std, err := readLicense(goRoot, ".")
	if err != nil {
		return fmt.Errorf("go standard library (GOROOT): %w", err)
	}
	p, err := std.paragraph("go/src/*", "Go "+info.GoVersion)
	if err != nil {
		return fmt.Errorf("go standard library (GOROOT): %w", err)
	}
	p.comment = fmt.Sprintf("The Go standard library and runtime, %s, linked into %s.", info.GoVersion, c.installed) + p.comment
	paras = append(paras, p)

	deps := append([]*debug.Module(nil), info.Deps...)
	sort.Slice(deps, func(i, j int) bool { return deps[i].Path < deps[j].Path })
	var errs []error
	for _, m := range deps {
		p, err := moduleParagraph(modCache, m, c.installed)
		if err != nil {
			errs = append(errs, fmt.Errorf("module %s %s: %w", m.Path, m.Version, err))
			continue
		}
		paras = append(paras, p)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	var b strings.Builder
	b.WriteString("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n")
	field(&b, "Upstream-Name", c.name)
	if c.contact != "" {
		field(&b, "Upstream-Contact", c.contact)
	}
	if c.source != "" {
		field(&b, "Source", c.source)
	}
	field(&b, "Comment", fmt.Sprintf("%s is a statically linked Go program. Besides %s's own code it "+
		"contains the Go standard library and runtime (%s) and the %d Go modules listed below, "+
		"which are what \"go version -m %s\" prints. The package build generates this file from "+
		"that list and from each module's license file, so it names every module compiled in.",
		c.installed, c.name, info.GoVersion, len(deps), c.installed))
	ids := map[string]bool{}
	for _, p := range paras {
		b.WriteString("\n")
		field(&b, "Files", p.files)
		field(&b, "Copyright", strings.Join(p.copyright, "\n"))
		field(&b, "License", p.license+"\n"+p.text)
		if p.comment != "" {
			field(&b, "Comment", p.comment)
		}
		ids[p.license] = true
	}
	// Apache-2.0 is not repeated in each paragraph: Debian ships it in
	// common-licenses, and lintian wants copyright files to point there
	// (copyright-not-using-common-license-for-apache2).
	if ids["Apache-2.0"] {
		b.WriteString("\n")
		field(&b, "License", "Apache-2.0\n"+apacheStandalone)
	}
	_, err = io.WriteString(w, b.String())
	return err
}

const apacheStandalone = `Licensed under the Apache License, Version 2.0 (the "License"); you may not
use this file except in compliance with the License. You may obtain a copy
of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
License for the specific language governing permissions and limitations
under the License.

On Debian systems, the complete text of the Apache License, Version 2.0
can be found in /usr/share/common-licenses/Apache-2.0.`

// textFor is the text for a Files paragraph's License field: none for
// Apache-2.0 (the stand-alone paragraph has it), the file's full text
// otherwise, since BSD and MIT texts carry their holders' names.
func textFor(id, text string) string {
	if id == "Apache-2.0" {
		return ""
	}
	return strings.Trim(text, "\n")
}

// field writes a DEP-5 field: the value's first line after the colon,
// every other line indented by one space, an empty line as " .".
func field(b *strings.Builder, name, value string) {
	lines := strings.Split(strings.TrimRight(value, "\n"), "\n")
	b.WriteString(name + ":")
	if lines[0] != "" {
		b.WriteString(" " + strings.TrimRight(lines[0], " \t"))
	}
	b.WriteString("\n")
	for _, l := range lines[1:] {
		l = strings.TrimRight(strings.ReplaceAll(l, "\t", "    "), " ")
		if l == "" {
			l = "."
		}
		b.WriteString(" " + l + "\n")
	}
}

// moduleParagraph finds module m in the module cache (its replacement
// if it has one) and makes its paragraph.
func moduleParagraph(modCache fs.FS, m *debug.Module, installed string) (paragraph, error) {
	src := m
	if m.Replace != nil {
		src = m.Replace
	}
	if src.Version == "" {
		// A replacement by a local directory has no place in the
		// module cache; its license must be listed by hand.
		return paragraph{}, fmt.Errorf("replaced by directory %s: not in the module cache", src.Path)
	}
	dir := escape(src.Path) + "@" + escape(src.Version)
	lf, err := readLicense(modCache, dir)
	if err != nil {
		return paragraph{}, err
	}
	p, err := lf.paragraph(m.Path+"/*", "the "+m.Path+" authors")
	if err != nil {
		return paragraph{}, err
	}
	what := fmt.Sprintf("Go module %s %s", m.Path, m.Version)
	if m.Replace != nil {
		what += fmt.Sprintf(" (replaced by %s %s)", m.Replace.Path, m.Replace.Version)
	}
	p.comment = fmt.Sprintf("%s, compiled into %s; license from its %s.", what, installed, lf.name) + p.comment
	return p, nil
}

// escape is the module cache's case encoding of a module path or
// version (golang.org/x/mod/module.EscapePath): each upper-case letter
// becomes "!" and its lower case, for case-insensitive file systems.
func escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// A licenseFile is a module's (or GOROOT's) license and the NOTICE and
// PATENTS files next to it.
type licenseFile struct {
	name, text string
	notice     string // NOTICE: Apache-2.0 section 4(d) requires passing it on
	patents    string // PATENTS: the Go project's patent grant
}

// readLicense reads the one license file at the root of dir: a name
// that starts with LICENSE, LICENCE or COPYING (LICENSE.md, COPYING,
// LICENSE-MIT). None or more than one is an
// error (a dual-licensed module needs a human decision).
func readLicense(fsys fs.FS, dir string) (licenseFile, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return licenseFile{}, err
	}
	var lf licenseFile
	var found []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		upper := strings.ToUpper(e.Name())
		base := strings.SplitN(upper, ".", 2)[0]
		var dst *string
		switch {
		case strings.HasPrefix(upper, "LICENSE"), strings.HasPrefix(upper, "LICENCE"), strings.HasPrefix(upper, "COPYING"):
			found = append(found, e.Name())
			lf.name = e.Name()
			dst = &lf.text
		case base == "NOTICE":
			dst = &lf.notice
		case base == "PATENTS":
			dst = &lf.patents
		default:
			continue
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return licenseFile{}, err
		}
		*dst = string(b)
	}
	switch len(found) {
	case 0:
		return licenseFile{}, errors.New("no LICENSE, LICENCE or COPYING file")
	case 1:
		return lf, nil
	}
	return licenseFile{}, fmt.Errorf("several license files (%s): list this module by hand", strings.Join(found, ", "))
}

// paragraph classifies the license and collects the copyright notices
// from the license file, or from NOTICE when it has none (Apache-2.0
// LICENSE files usually have none); fallback is the holder when neither
// names one.
func (lf licenseFile) paragraph(files, fallback string) (paragraph, error) {
	id, err := Classify(lf.text)
	if err != nil {
		return paragraph{}, fmt.Errorf("%s: %w", lf.name, err)
	}
	p := paragraph{files: files, license: id, text: textFor(id, lf.text)}
	p.copyright = notices(lf.text)
	if len(p.copyright) == 0 {
		p.copyright = notices(lf.notice)
	}
	if len(p.copyright) == 0 {
		p.copyright = []string{fallback}
		p.comment += " Its license files name no copyright holder."
	}
	if lf.notice != "" {
		p.comment += "\n\nIts NOTICE file:\n\n" + strings.Trim(lf.notice, "\n")
	}
	if lf.patents != "" {
		p.comment += "\n\nIts PATENTS file:\n\n" + strings.Trim(lf.patents, "\n")
	}
	return p, nil
}
