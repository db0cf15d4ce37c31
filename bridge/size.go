// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrTooLarge is a size beyond 2^63-1 bytes, the largest file offset
// Linux addresses: no LUN can be larger (SCSI's 64-bit LBAs would allow
// more, with either block size).
var ErrTooLarge = errors.New("more than the largest LUN, 2^63 bytes less one block (8192P, the largest file Linux can address)")

// ParseSize parses a byte count with an optional binary suffix: "4096",
// "64M", "10G", "1T", "512K", "2GiB". Suffixes are powers of 1024. It
// rejects negative, empty and overflowing values.
//
// Why by hand and not github.com/dustin/go-humanize's ParseBytes (issue
// 15): go-humanize reads "10G" as 10*10^9 bytes (SI) and only "10GiB" as
// 10*2^30, while lunbridge, like targetcli, qemu-img and truncate(1),
// means 2^30 by "G"; taking go-humanize would change every size in every
// existing config. It also accepts fractions ("1.5G") and spaces that a
// block count has no use for. The parser is 30 lines.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "iB"), "B")
	shift := 0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			shift = 10
		case 'm', 'M':
			shift = 20
		case 'g', 'G':
			shift = 30
		case 't', 'T':
			shift = 40
		case 'p', 'P':
			shift = 50
		}
		if shift != 0 {
			t = t[:n-1]
		}
	}
	if t == "" || t[0] == '+' || t[0] == '-' {
		return 0, fmt.Errorf("size %q: %w", s, ErrInvalid)
	}
	n, err := strconv.ParseUint(t, 10, 63)
	if errors.Is(err, strconv.ErrRange) || err == nil && n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("size %q: %w: %w", s, ErrTooLarge, ErrInvalid)
	}
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, ErrInvalid)
	}
	return int64(n) << shift, nil
}
