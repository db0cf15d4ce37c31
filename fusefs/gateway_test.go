// SPDX-License-Identifier: Apache-2.0

package fusefs

import (
	"strings"
	"testing"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/scsi"
)

func TestRenderInfoGateway(t *testing.T) {
	l := testLUN("d0")
	l.Gateway = &bridge.GatewayInfo{Group: 2, State: scsi.StateActiveOptimized, Owner: true, Epoch: 9, OwnerGroup: 2, OwnerKnown: true}
	got := string(renderInfo(nil, nil, &l))
	want := "write_cache write-back\nalua_group 2\nalua_state active_optimized\nowner 1\nowner_group 2\nepoch 9\n"
	if !strings.HasSuffix(got, want) {
		t.Errorf("info of an owner gateway ends:\n%s\nwant it to end:\n%s", got, want)
	}
	l.Gateway = &bridge.GatewayInfo{Group: 1, State: scsi.StateStandby}
	got = string(renderInfo(nil, nil, &l))
	want = "alua_group 1\nalua_state standby\nowner 0\nowner_group -\nepoch 0\n"
	if !strings.HasSuffix(got, want) {
		t.Errorf("info of a standby gateway with no owner known ends:\n%s\nwant:\n%s", got, want)
	}
}
