package integration

import (
	"testing"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestFileioLoopback checks the harness end to end against LIO's own fileio
// backstore: a 64 MiB random pattern written with O_DIRECT through the
// tcm_loop /dev/sdX must read back identically and be what the backing file
// holds. It is the reference the TCMU tests compare lunbridge with.
func TestFileioLoopback(t *testing.T) {
	vmtest.Run(t, vmtest.Options{Script: `
dd if=/dev/urandom of=/tmp/pattern bs=1M count=64 2>/dev/null
d=$(fileio_create ref /tmp/ref.img 67108864)
cat "$d/info"
dev=$(loop_export 5001405000000001 "$d")
echo "fileio LUN is $dev"
[ "$(cat /sys/block/${dev#/dev/}/size)" = 131072 ] || die "size $(cat /sys/block/${dev#/dev/}/size) sectors, want 131072"
[ "$(loop_dev 5001405000000001)" = "$dev" ] || die "loop_dev disagrees"
dd if=/tmp/pattern of="$dev" bs=1M oflag=direct
dd if="$dev" of=/tmp/readback bs=1M iflag=direct
want=$(md5sum < /tmp/pattern)
got=$(md5sum < /tmp/readback)
file=$(md5sum < /tmp/ref.img)
echo "pattern $want"
echo "device  $got"
echo "file    $file"
[ "$got" = "$want" ] || die "device read-back differs from the pattern"
[ "$file" = "$want" ] || die "backing file differs from the pattern"
loop_unexport 5001405000000001
[ ! -e "$dev" ] || die "$dev still exists after unexport"
fileio_remove ref
target_leftovers
`})
}
