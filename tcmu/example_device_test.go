// SPDX-License-Identifier: Apache-2.0

package tcmu_test

import (
	"context"
	"log"

	"github.com/lunbridge/lunbridge/tcmu"
)

// Creating (or, after a restart, adopting) a user backstore and handing its
// shared memory and notifier to a ring consumer.
func ExampleOpenDevice() {
	ctx := context.Background()
	d, err := tcmu.OpenDevice(ctx, tcmu.DeviceConfig{
		Name:      "disk0",
		Config:    "disk0",
		Size:      1 << 30,
		BlockSize: 4096,
	})
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("%s on %s (adopted %v), %d bytes shared", d.Path(), d.UIO(), d.Adopted(), len(d.Mem()))
	_ = d.Notifier() // the ring waits and kicks through it
	// Close keeps the backstore for the next run; Remove deletes it once
	// no fabric LUN links it.
	if err := d.Close(); err != nil {
		log.Fatal(err)
	}
}
