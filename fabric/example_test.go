// SPDX-License-Identifier: Apache-2.0

package fabric_test

import (
	"context"
	"fmt"
	"log"

	"github.com/lunbridge/lunbridge/fabric"
)

func ExampleLoopWWNs() {
	target, nexus := fabric.LoopWWNs("disk0")
	fmt.Println(fabric.ValidateNAA(target) == nil, fabric.ValidateNAA(nexus) == nil, target != nexus)
	// Output: true true true
}

func ExampleDefaultIQN() {
	fmt.Println(fabric.DefaultIQN("build-01.example.com", "disk0"))
	fmt.Println(fabric.ValidateIQN(fabric.DefaultIQN("Build_01", "Disk 0")))
	// Output:
	// iqn.2003-01.org.linux-iscsi.build-01.example.com:lunbridge.disk0
	// <nil>
}

// Exporting a backstore as a local disk. The backstore's handler must be
// serving its ring before AddLUN: the kernel scans the new disk through it.
func ExampleLoopTarget() {
	ctx := context.Background()
	wwn, nexus := fabric.LoopWWNs("disk0")
	lt := &fabric.LoopTarget{WWN: wwn, NexusWWN: nexus}
	dev, err := lt.AddLUN(ctx, 0, "/sys/kernel/config/target/core/user_0/disk0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("exported as", dev)
	// ... serve I/O ...
	if err := lt.Remove(); err != nil { // before removing the backstore
		log.Fatal(err)
	}
}

// Exporting over iSCSI to one initiator with CHAP.
func ExampleISCSITarget() {
	ctx := context.Background()
	it := &fabric.ISCSITarget{
		IQN:          fabric.DefaultIQN("host", "disk0"),
		Initiators:   []string{"iqn.1994-05.com.redhat:client"},
		CHAPUser:     "user",
		CHAPPassword: "secret-from-a-file",
	}
	url, err := it.AddLUN(ctx, 0, "/sys/kernel/config/target/core/user_0/disk0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("exported at", url)
	defer it.Remove()
}
