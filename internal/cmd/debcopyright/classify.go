// SPDX-License-Identifier: Apache-2.0

package main

import (
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// apache20 is the Apache License 2.0 as Debian ships it in
// /usr/share/common-licenses/Apache-2.0 (the repository's LICENSE too;
// TestApacheTextIsLICENSE keeps the two equal).
//
//go:embed apache-2.0.txt
var apache20 string

// ErrUnknownLicense is returned for a text that is none of the licenses
// the classifier knows word for word.
var ErrUnknownLicense = errors.New("license text matches no known license")

// A license is one SPDX identifier and the pattern of its normalised
// text (see normalize), anchored at both ends: every word of a license
// file must be accounted for, so a text with an extra clause (a
// non-commercial rider, an advertising clause) is unknown, not "MIT".
type license struct {
	id string
	re *regexp.Regexp
}

// Pattern pieces over normalised text, where every word is followed by
// one space.
func lit(s string) string { return regexp.QuoteMeta(normalize(s)) }

func opt(parts ...string) string { return "(?:" + strings.Join(parts, "") + ")?" }

func oneOf(alts ...string) string { return "(?:" + strings.Join(alts, "|") + ")" }

// words is a hole of n to m arbitrary words: a holder's name.
func words(n, m int) string { return fmt.Sprintf(`(?:\S+ ){%d,%d}`, n, m) }

func anchored(parts ...string) *regexp.Regexp {
	return regexp.MustCompile("^" + strings.Join(parts, "") + "$")
}

// The BSD clauses as the Go project, go-fuse, godbus and SPDX word them;
// the numbering (1., 2., 3.) or bullets are optional and the liability
// sentence names the holders in one of a few ways.
var (
	bsdIntro = lit(`Redistribution and use in source and binary forms, with
or without modification, are permitted provided that the following
conditions are met:`)
	bsdSource = opt("1 ") + lit(`Redistributions of source code must retain
the above copyright notice, this list of conditions and the following
disclaimer.`)
	bsdBinary = opt("2 ") + lit(`Redistributions in binary form must
reproduce the above copyright notice, this list of conditions and the
following disclaimer in the documentation and/or other materials provided
with the distribution.`)
	bsdEndorse = opt("3 ") + lit("Neither the name of") + words(1, 12) +
		lit("nor the names of") + oneOf(lit("its"), lit("their")) + lit(`contributors
may be used to endorse or promote products derived from this software
without specific prior written permission.`)
	holders       = oneOf(lit("copyright holders"), lit("copyright holder"), lit("copyright owner"))
	bsdDisclaimer = lit(`THIS SOFTWARE IS PROVIDED BY THE`) + holders + lit(`AND
CONTRIBUTORS "AS IS" AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT
NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A
PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE`) + holders + lit(`OR
CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL,
EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO,
PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS;
OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY,
WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR
OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF
ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.`)
	mitBody = lit(`Permission is hereby granted, free of charge, to any person
obtaining a copy of this software and associated documentation files (the
"Software"), to deal in the Software without restriction, including without
limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to
whom the Software is furnished to do so, subject to the following
conditions: The above copyright notice and this permission notice shall be
included in all copies or substantial portions of the Software. THE
SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING
FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
DEALINGS IN THE SOFTWARE.`)
)

// licenses are tried in order; the patterns are exclusive (BSD-2-Clause
// has no endorsement clause, so a BSD-3-Clause text never matches it).
var licenses = []license{
	{"Apache-2.0", apachePattern()},
	{"MIT", anchored(opt(oneOf(lit("The MIT License (MIT)"), lit("MIT License"))), mitBody)},
	{"BSD-3-Clause", anchored(
		opt(oneOf(lit("New BSD License"), lit("BSD 3-Clause License"), lit("The 3-Clause BSD License"))),
		bsdIntro, bsdSource, bsdBinary, bsdEndorse, bsdDisclaimer)},
	{"BSD-2-Clause", anchored(
		opt(oneOf(lit("Simplified BSD License"), lit("BSD 2-Clause License"),
			words(1, 3)+lit("is distributed under the Simplified BSD License"))),
		bsdIntro, bsdSource, bsdBinary, bsdDisclaimer)},
}

// apachePattern is the Apache-2.0 terms word for word, then optionally
// the appendix ("How to apply the Apache License to your work"), which
// most LICENSE files carry and some leave out. The appendix's template
// notice "Copyright [yyyy] [name of copyright owner]" is usually dropped
// with the other notice lines (or filled in), but stays when a text is
// wrapped differently, so it is optional.
func apachePattern() *regexp.Regexp {
	const template = "Copyright [yyyy] [name of copyright owner]"
	i := strings.Index(apache20, "APPENDIX: How to apply")
	j := strings.Index(apache20, template)
	if i < 0 || j < i {
		panic("apache-2.0.txt has no APPENDIX with a copyright template")
	}
	terms, appA, appB := apache20[:i], apache20[i:j], apache20[j+len(template):]
	return anchored(lit(terms), opt(lit(appA), opt(lit(template)), lit(appB)))
}

// Classify returns the SPDX identifier of a license file's text: the
// text, less its copyright notices (see stripNotices), must be one of
// the known licenses word for word, up to case, punctuation and line
// breaks.
func Classify(text string) (string, error) {
	norm := normalize(stripNotices(text))
	if norm == "" {
		return "", fmt.Errorf("%w: no text besides copyright notices", ErrUnknownLicense)
	}
	for _, l := range licenses {
		if l.re.MatchString(norm) {
			return l.id, nil
		}
	}
	return "", ErrUnknownLicense
}

// normalize lower-cases s and turns every run of characters other than
// letters and digits into one space after each word, so that line
// breaks, indentation, quoting (">"), bullets and punctuation do not
// matter. "https" counts as "http" (the Apache header's URL).
func normalize(s string) string {
	var b strings.Builder
	for _, w := range strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}) {
		if w == "https" {
			w = "http"
		}
		b.WriteString(w)
		b.WriteByte(' ')
	}
	return b.String()
}

// noticeLine matches a copyright notice line: "Copyright" followed by
// (c), ©, a year or the Apache appendix's "[yyyy]", or (c)/© with a
// year, or "All rights reserved." alone; leading blanks and markdown
// quoting (">") are ignored. It must not match a line of license terms
// that happens to start with "copyright notice ..." or "copyright
// license ...", hence the year.
var noticeLine = regexp.MustCompile(`(?i)^[\s>]*(?:copyright\s*(?:\(c\)|©|\d|\[yyyy\])|(?:\(c\)|©)\s*\d|all rights reserved\.?\s*$)`)

// stripNotices drops the copyright notice lines of a license file: they
// name the holders, who differ from module to module, and go into the
// Copyright field (see notices).
func stripNotices(text string) string {
	var kept []string
	for _, line := range strings.Split(text, "\n") {
		if !noticeLine.MatchString(line) {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}

// notices returns the copyright notices of a license or NOTICE file,
// each without its "Copyright"/"(c)"/"©" prefix and "All rights
// reserved.", as DEP-5's Copyright field wants them. The Apache
// appendix's template line is not a notice.
func notices(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if !noticeLine.MatchString(line) || strings.Contains(line, "[yyyy]") {
			continue
		}
		s := strings.TrimLeft(line, " \t>")
		s = noticePrefix.ReplaceAllString(s, "")
		s = reserved.ReplaceAllString(s, "")
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

var (
	noticePrefix = regexp.MustCompile(`(?i)^(?:copyright\b\s*)?(?:(?:\(c\)|©)\s*)?`)
	reserved     = regexp.MustCompile(`(?i)[.,]?\s*all rights reserved\.?`)
)
