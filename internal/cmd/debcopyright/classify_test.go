// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The testdata/*.txt license files are copies of the license files of
// modules lunbridge links (and of Go's own), as the module cache holds
// them: file name = the SPDX identifier the classifier must give, then
// where the copy comes from.
func TestClassifyRealFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*-*.txt")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasPrefix(base, "NOTICE-") {
			continue
		}
		n++
		want := base[:strings.LastIndex(base, "-")]
		t.Run(base, func(t *testing.T) {
			got, err := Classify(read(t, f))
			if err != nil || got != want {
				t.Errorf("Classify(%s) = %q, %v, want %q", f, got, err, want)
			}
		})
	}
	if n < 9 {
		t.Fatalf("found %d license files in testdata, want 9", n)
	}
}

// Each variant changes a known text the way a real license differs from
// the one it resembles; the classifier must not give it that license.
func TestClassifyRejectsVariants(t *testing.T) {
	mit := read(t, "testdata/MIT-toml.txt")
	bsd3 := read(t, "testdata/BSD-3-Clause-go.txt")
	apache := read(t, "testdata/Apache-2.0-client_golang.txt")
	for _, tc := range []struct{ name, text string }{
		{"empty", ""},
		{"copyright notice only", "Copyright (c) 2020 Someone\nAll rights reserved.\n"},
		// The JSON license: MIT plus one sentence.
		{"MIT plus good not evil", strings.Replace(mit, "THE SOFTWARE IS PROVIDED",
			"The Software shall be used for Good, not Evil.\n\nTHE SOFTWARE IS PROVIDED", 1)},
		{"MIT without the notice condition", strings.Replace(mit,
			"The above copyright notice and this permission notice shall be included in\nall copies or substantial portions of the Software.", "", 1)},
		{"MIT, non-commercial", strings.Replace(mit, "sublicense, and/or sell", "and/or sublicense", 1)},
		// The original BSD license's advertising clause (BSD-4-Clause).
		{"BSD-4-Clause", strings.Replace(bsd3, "   * Neither the name",
			"   * All advertising materials mentioning features or use of this software\n"+
				"must display the following acknowledgement: This product includes software\n"+
				"developed by Google.\n   * Neither the name", 1)},
		{"BSD-3 without disclaimer", bsd3[:strings.Index(bsd3, "THIS SOFTWARE IS PROVIDED")]},
		{"BSD-3 with a long holder hole", strings.Replace(bsd3, "Google LLC",
			strings.Repeat("word ", 13), 1)},
		{"Apache-2.0 with a changed section 7", strings.Replace(apache,
			"Licensor provides the Work", "Licensor provides the Work only for non-commercial use", 1)},
		{"Apache-2.0 cut short", apache[:len(apache)/2]},
		{"Apache-2.0 with an additional term", apache + "\nADDITIONAL TERMS: you may not use this for evil.\n"},
		{"GPL-2.0 notice", `This program is free software; you can redistribute it and/or modify
it under the terms of the GNU General Public License as published by
the Free Software Foundation; either version 2 of the License, or
(at your option) any later version.`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := Classify(tc.text); !errors.Is(err, ErrUnknownLicense) {
				t.Errorf("Classify(%s) = %q, %v, want ErrUnknownLicense", tc.name, got, err)
			}
		})
	}
}

// The Apache-2.0 terms without the appendix (some projects cut it), in
// https form and rewrapped, are still Apache-2.0: only words count.
func TestClassifyApacheForms(t *testing.T) {
	apache := read(t, "testdata/Apache-2.0-client_golang.txt")
	noAppendix := apache[:strings.Index(apache, "APPENDIX")]
	rewrapped := strings.Join(strings.Fields(strings.ReplaceAll(apache, "http://", "https://")), "\n")
	filled := strings.Replace(apache, "Copyright [yyyy] [name of copyright owner]", "Copyright 2015 The Prometheus Authors", 1)
	for name, text := range map[string]string{"no appendix": noAppendix, "rewrapped https": rewrapped, "filled in": filled} {
		if got, err := Classify(text); err != nil || got != "Apache-2.0" {
			t.Errorf("Classify(%s) = %q, %v, want Apache-2.0", name, got, err)
		}
	}
}

// The repository's LICENSE and the embedded copy the classifier uses are
// the same text, and the classifier says what it is.
func TestApacheTextIsLICENSE(t *testing.T) {
	license := read(t, "../../../LICENSE")
	if license != apache20 {
		t.Errorf("apache-2.0.txt differs from the repository's LICENSE")
	}
	if got, err := Classify(license); err != nil || got != "Apache-2.0" {
		t.Errorf("Classify(LICENSE) = %q, %v, want Apache-2.0", got, err)
	}
}

func TestNotices(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"testdata/MIT-toml.txt", []string{"2013 TOML authors"}},
		{"testdata/MIT-smetrics.txt", []string{"2016 Felipe da Cunha Gonçalves"}},
		{"testdata/BSD-3-Clause-go.txt", []string{"2009 The Go Authors."}},
		{"testdata/BSD-3-Clause-gofuse.txt", []string{"2010 the Go-FUSE Authors"}},
		{"testdata/BSD-2-Clause-blackfriday.txt", []string{"2011 Russ Ross"}},
		{"testdata/BSD-2-Clause-godbus.txt", []string{"2013, Georg Reinke (<guelfey at gmail dot com>), Google"}},
		// The appendix's "Copyright [yyyy] [name of copyright owner]" is
		// a template, not a notice.
		{"testdata/Apache-2.0-client_golang.txt", nil},
		{"testdata/NOTICE-client_golang.txt", []string{"2012-2015 The Prometheus Authors",
			"2013-2015 Blake Mizerany, Björn Rabenstein", "2010 The Go Authors"}},
	} {
		if got := notices(read(t, tc.file)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("notices(%s) = %q, want %q", tc.file, got, tc.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "",
		"  \n ":                    "",
		"The MIT License (MIT)\n":  "the mit license mit ",
		"> 1.  Redistributions\n>": "1 redistributions ",
		"see https://x.org/":       "see http x org ",
		"Gonçalves, 2016":          "gonçalves 2016 ",
	} {
		if got := normalize(in); got != want {
			t.Errorf("normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
