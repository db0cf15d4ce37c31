// SPDX-License-Identifier: Apache-2.0

package main

import (
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"testing/fstest"
)

// buildInfo is what "go version -m" prints for a binary with these
// modules (debug.ParseBuildInfo reads that format).
func buildInfo(t *testing.T, deps ...string) *debug.BuildInfo {
	t.Helper()
	s := "go\tgo1.26.8\npath\texample.com/prog\nmod\texample.com/prog\t(devel)\t\n"
	for _, d := range deps {
		s += d + "\n"
	}
	info, err := debug.ParseBuildInfo(s)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func testConfig() config {
	return config{license: "LICENSE", name: "prog", contact: "Dev <dev@example.com>",
		source: "https://example.com/prog", copyright: "2026 prog developers", installed: "/usr/sbin/prog"}
}

func file(text string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(text)} }

// goRoot is a fake GOROOT with Go's license and patent grant.
func goRoot(t *testing.T) fstest.MapFS {
	return fstest.MapFS{
		"LICENSE": file(read(t, "testdata/BSD-3-Clause-go.txt")),
		"PATENTS": file("Additional IP Rights Grant (Patents)\n"),
		"VERSION": file("go1.26.8\n"),
	}
}

func TestGenerate(t *testing.T) {
	cache := fstest.MapFS{
		// Upper case in a module path is "!" + lower case in the cache.
		"github.com/!burnt!sushi/toml@v1.6.0/COPYING":                 file(read(t, "testdata/MIT-toml.txt")),
		"github.com/!burnt!sushi/toml@v1.6.0/toml.go":                 file("package toml\n"),
		"github.com/prometheus/client_golang@v1.25.0/LICENSE":         file(read(t, "testdata/Apache-2.0-client_golang.txt")),
		"github.com/prometheus/client_golang@v1.25.0/NOTICE":          file(read(t, "testdata/NOTICE-client_golang.txt")),
		"github.com/hanwen/go-fuse/v2@v2.12.1/LICENSE":                file(read(t, "testdata/BSD-3-Clause-gofuse.txt")),
		"github.com/fork/blackfriday/v2@v2.1.1-fork/LICENSE.txt":      file(read(t, "testdata/BSD-2-Clause-blackfriday.txt")),
		"github.com/russross/blackfriday/v2@v2.1.0/LICENSE.txt":       file("a different text: the replacement is what is compiled in\n"),
		"github.com/prometheus/client_golang@v1.25.0/prometheus/x.go": file("package prometheus\n"),
	}
	info := buildInfo(t,
		"dep\tgithub.com/BurntSushi/toml\tv1.6.0\th1:x=",
		"dep\tgithub.com/prometheus/client_golang\tv1.25.0\th1:x=",
		"dep\tgithub.com/hanwen/go-fuse/v2\tv2.12.1\th1:x=",
		"dep\tgithub.com/russross/blackfriday/v2\tv2.1.0\t",
		"=>\tgithub.com/fork/blackfriday/v2\tv2.1.1-fork\th1:y=",
	)
	var b strings.Builder
	if err := generate(&b, testConfig(), info, apache20, cache, goRoot(t)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	checkDEP5(t, out)

	// Files -> License, in order.
	var got []string
	for _, para := range strings.Split(out, "\n\n")[1:] {
		fields := map[string]string{}
		for _, line := range strings.Split(para, "\n") {
			if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
				fields[k] = v
			}
		}
		got = append(got, fields["Files"]+" "+fields["License"])
	}
	want := []string{
		"* Apache-2.0",
		"go/src/* BSD-3-Clause",
		"github.com/BurntSushi/toml/* MIT",
		"github.com/hanwen/go-fuse/v2/* BSD-3-Clause",
		"github.com/prometheus/client_golang/* Apache-2.0",
		"github.com/russross/blackfriday/v2/* BSD-2-Clause",
		" Apache-2.0", // the stand-alone License paragraph
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("paragraphs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, s := range []string{
		"Upstream-Name: prog\n",
		"Copyright: 2026 prog developers\n",
		"Copyright: 2013 TOML authors\n",
		// Apache-2.0's LICENSE has no notice; NOTICE's are used, and
		// NOTICE itself is passed on (Apache-2.0 section 4(d)).
		"Copyright: 2012-2015 The Prometheus Authors\n 2013-2015 Blake Mizerany, Björn Rabenstein\n 2010 The Go Authors\n",
		" This product includes software developed at\n",
		"Go module github.com/russross/blackfriday/v2 v2.1.0 (replaced by github.com/fork/blackfriday/v2 v2.1.1-fork)",
		" Additional IP Rights Grant (Patents)\n",
		// A BSD text carries its holder: it is copied whole, blank
		// lines as " .".
		" Permission is hereby granted, free of charge, to any person obtaining a copy\n",
		" Neither the name of Ivan Krasin nor the names of its\n",
		"/usr/share/common-licenses/Apache-2.0",
		"and the 4 Go modules listed below",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	// Apache-2.0's terms are not copied (lintian: use common-licenses).
	if strings.Contains(out, "TERMS AND CONDITIONS FOR USE") {
		t.Errorf("output copies the Apache-2.0 terms")
	}
}

func TestGenerateFails(t *testing.T) {
	mit := file(read(t, "testdata/MIT-toml.txt"))
	for _, tc := range []struct {
		name  string
		cache fstest.MapFS
		dep   []string
		want  string // in the error
	}{
		{"unknown license", fstest.MapFS{"example.com/a@v1.0.0/LICENSE": file("Do what you want, but not on Sundays.\n")},
			[]string{"dep\texample.com/a\tv1.0.0\th1:x="}, "module example.com/a v1.0.0: LICENSE: license text matches no known license"},
		{"no license file", fstest.MapFS{"example.com/a@v1.0.0/README": file("hi\n")},
			[]string{"dep\texample.com/a\tv1.0.0\th1:x="}, "module example.com/a v1.0.0: no LICENSE, LICENCE or COPYING file"},
		{"not in the cache", fstest.MapFS{"example.com/a@v1.0.0/LICENSE": mit},
			[]string{"dep\texample.com/a\tv1.1.0\th1:x="}, "module example.com/a v1.1.0: open example.com/a@v1.1.0"},
		{"dual licensed", fstest.MapFS{"example.com/a@v1.0.0/LICENSE-MIT": mit, "example.com/a@v1.0.0/LICENSE-APACHE": file(apache20)},
			[]string{"dep\texample.com/a\tv1.0.0\th1:x="}, "several license files (LICENSE-APACHE, LICENSE-MIT)"},
		{"local replacement", fstest.MapFS{"example.com/a@v1.0.0/LICENSE": mit},
			[]string{"dep\texample.com/a\tv1.0.0\t", "=>\t../a\t\t"}, "replaced by directory ../a"},
		{"every bad module is named", fstest.MapFS{"example.com/ok@v1.0.0/LICENSE": mit},
			[]string{"dep\texample.com/a\tv1.0.0\th1:x=", "dep\texample.com/ok\tv1.0.0\th1:x=", "dep\texample.com/b\tv1.0.0\th1:x="},
			"module example.com/a v1.0.0: open example.com/a@v1.0.0: file does not exist\nmodule example.com/b v1.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			err := generate(&b, testConfig(), buildInfo(t, tc.dep...), apache20, tc.cache, goRoot(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("generate = %v, want an error with %q", err, tc.want)
			}
			if b.Len() != 0 {
				t.Errorf("generate wrote %d bytes despite the error", b.Len())
			}
		})
	}
	// The program's own license must be known too.
	var b strings.Builder
	if err := generate(&b, testConfig(), buildInfo(t), "All yours.\n", fstest.MapFS{}, goRoot(t)); err == nil {
		t.Errorf("generate with an unknown own license: no error")
	}
}

var (
	dep5Field = regexp.MustCompile(`^[A-Za-z][A-Za-z-]*:( |$)`)
	dep5Cont  = regexp.MustCompile(`^[ \t].*\S`)
)

// checkDEP5 checks the syntax of a DEP-5 file (Debian control syntax):
// paragraphs of "Name: value" fields with continuation lines that start
// with a space and are never blank, the header first.
func checkDEP5(t *testing.T, s string) {
	t.Helper()
	if !strings.HasPrefix(s, "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n") || !strings.HasSuffix(s, "\n") || strings.Contains(s, "\n\n\n") {
		t.Fatalf("not a DEP-5 file:\n%s", s)
	}
	for i, para := range strings.Split(strings.TrimSuffix(s, "\n"), "\n\n") {
		seen := map[string]bool{}
		for j, line := range strings.Split(para, "\n") {
			switch {
			case dep5Field.MatchString(line):
				name, _, _ := strings.Cut(line, ":")
				if seen[name] {
					t.Errorf("paragraph %d: field %s twice", i, name)
				}
				seen[name] = true
			case j > 0 && dep5Cont.MatchString(line):
			default:
				t.Errorf("paragraph %d line %d: %q is neither a field nor a continuation", i, j, line)
			}
		}
		if i > 0 && !seen["License"] {
			t.Errorf("paragraph %d has no License:\n%s", i, para)
		}
		if seen["Files"] && !seen["Copyright"] {
			t.Errorf("paragraph %d has Files but no Copyright:\n%s", i, para)
		}
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"github.com/BurntSushi/toml": "github.com/!burnt!sushi/toml",
		"golang.org/x/sys":           "golang.org/x/sys",
		"v1.0.0-RC1":                 "v1.0.0-!r!c1",
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}
