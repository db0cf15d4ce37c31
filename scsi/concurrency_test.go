// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"errors"
	"sync"
	"testing"
)

// TestConcurrentMix runs every kind of command from several goroutines
// while the bridge-side setters change state, for the race detector:
// every error must still be an *Error.
func TestConcurrentMix(t *testing.T) {
	d, _ := newDisk(t, nil)
	caching, _ := d.modePage(pageCaching, pcCurrent)
	ms := modeSelectList(nil, caching)
	cmds := []struct {
		cdb  []byte
		data int
	}{
		{cdb10(OpRead10, 0, 8), 8 * 512},
		{cdb16(OpWrite16, 8, 8), 8 * 512},
		{writeSame16(16, 8, 0x09), 0},
		{unmapCDB(24), 24},
		{cawCDB(40, 1), 1024},
		{getLBAStatus(0, 64), 64},
		{modeSelect10(len(ms)), len(ms)},
		{modeSense6(false, 0, 0x3f, 0, 255), 255},
		{inquiryCDB(true, 0xb0, 255), 255},
		{[]byte{0, 0, 0, 0, 0, 0}, 0},
		{cdb10(OpSynchronizeCache10, 0, 0), 0},
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				c := cmds[(i+w)%len(cmds)]
				buf := make([]byte, c.data)
				if c.cdb[0] == byte(OpUnmap) {
					copy(buf, unmapList([2]uint64{24, 8}))
				}
				if c.cdb[0] == byte(OpModeSelect10) {
					copy(buf, ms)
				}
				_, err := d.Execute(c.cdb, [][]byte{buf})
				var se *Error
				if err != nil && !errors.As(err, &se) {
					t.Errorf("Execute(% x) = %v", c.cdb, err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			d.SetOnline(i%3 != 0)
			d.SetReadOnly(i%5 == 0)
			d.SetWriteCache(i%2 == 0)
			if err := d.SetCapacity(uint64(testBlocks - i%2)); err != nil {
				t.Error(err)
			}
			_ = d.Config()
		}
		d.SetOnline(true)
	}()
	wg.Wait()
}
