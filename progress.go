// SPDX-License-Identifier: Apache-2.0

package main

import (
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progressFor returns a Progress callback for preallocating a LUN: a
// progress bar on a terminal, nothing otherwise (logs say when it ends).
func progressFor(name string, out io.Writer) func(done, total int64) {
	f, ok := out.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	var bar *progressbar.ProgressBar
	return func(done, total int64) {
		if bar == nil {
			bar = progressbar.NewOptions64(total,
				progressbar.OptionSetWriter(out),
				progressbar.OptionSetDescription("preallocating "+name),
				progressbar.OptionShowBytes(true),
				progressbar.OptionClearOnFinish())
		}
		bar.Set64(done)
	}
}
