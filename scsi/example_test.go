// SPDX-License-Identifier: Apache-2.0

package scsi_test

import (
	"errors"
	"fmt"

	"github.com/lunbridge/lunbridge/internal/memdisk"
	"github.com/lunbridge/lunbridge/scsi"
)

func ExampleDisk_Execute() {
	const blocks = 2048
	be := memdisk.New(blocks*512, 512)
	d, err := scsi.NewDisk(scsi.Config{
		BlockSize:  512,
		Blocks:     blocks,
		Serial:     "example",
		NAA:        scsi.NAAFromName("example"),
		WriteCache: true,
	}, be)
	if err != nil {
		panic(err)
	}

	// WRITE(10) of one block at LBA 5, then READ(10) it back.
	block := make([]byte, 512)
	copy(block, "hello")
	if _, err := d.Execute([]byte{0x2a, 0, 0, 0, 0, 5, 0, 0, 1, 0}, [][]byte{block}); err != nil {
		panic(err)
	}
	in := make([]byte, 512)
	res, err := d.Execute([]byte{0x28, 0, 0, 0, 0, 5, 0, 0, 1, 0}, [][]byte{in})
	fmt.Println(string(in[:5]), res.Kind, res.DataIn, err)

	// A read past the end is CHECK CONDITION with sense data.
	_, err = d.Execute([]byte{0x28, 0, 0, 0, 0x08, 0, 0, 0, 1, 0}, [][]byte{in})
	var se *scsi.Error
	if errors.As(err, &se) {
		fmt.Println(errors.Is(err, scsi.ErrLBAOutOfRange))
		fmt.Printf("% x\n", d.Sense(nil, se))
	}
	// Output:
	// hello read 512 <nil>
	// true
	// 70 00 05 00 00 00 00 0a 00 00 00 00 21 00 00 00 00 00
}

func ExampleParseCDB() {
	// SBC-4 READ(6): a TRANSFER LENGTH of 0 means 256 blocks.
	c, err := scsi.ParseCDB([]byte{0x08, 0x00, 0x00, 0x10, 0x00, 0x00})
	fmt.Println(c.Op, c.LBA, c.Blocks, err)

	// RDPROTECT without protection information: byte 1, bit 5.
	_, err = scsi.ParseCDB([]byte{0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0})
	fmt.Println(err)
	// Output:
	// READ(6) 16 256 <nil>
	// scsi: ILLEGAL REQUEST 05/24/00: invalid field in CDB (CDB byte 1 bit 5)
}
