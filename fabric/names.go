// SPDX-License-Identifier: Apache-2.0

package fabric

import (
	"fmt"
	"hash/fnv"
	"strings"
)

// maxIQNLen is the longest iSCSI name: 223 bytes (RFC 3720 3.2.6.1);
// LIO's ISCSI_IQN_LEN is 224 with the NUL.
const maxIQNLen = 223

// naaPrefix is an NAA 5 (IEEE Registered) name with the OUI 00-14-05
// that LIO uses for the WWNs it generates (naa.5001405...): 7 of the 16
// hex digits; the 9 after it are ours to choose.
const naaPrefix = "naa.5001405"

func hash64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// naaFor returns naaPrefix followed by 9 hex digits derived from key.
func naaFor(key string) string {
	return fmt.Sprintf("%s%09x", naaPrefix, hash64(key)&(1<<36-1))
}

// LoopWWNs returns deterministic target and initiator (nexus) WWNs for a
// loopback target called name: the same name gives the same WWNs across
// restarts, so a restarted lunbridge finds its target again.
func LoopWWNs(name string) (target, nexus string) {
	target = naaFor("lunbridge-loop-target:" + name)
	nexus = naaFor("lunbridge-loop-nexus:" + name)
	if nexus == target { // a 36-bit collision; make them differ
		nexus = naaFor("lunbridge-loop-nexus2:" + name)
	}
	return target, nexus
}

// ValidateNAA checks an NAA name as tcm_loop takes it: "naa." and 16 hex
// digits (NAA 5 and 6 IEEE formats use 16 or 32).
func ValidateNAA(name string) error {
	hex, ok := strings.CutPrefix(name, "naa.")
	if !ok || (len(hex) != 16 && len(hex) != 32) || !isHex(hex) {
		return fmt.Errorf("fabric: %q is not an NAA name (naa. and 16 or 32 hex digits)", name)
	}
	return nil
}

func isHex(s string) bool {
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return s != ""
}

// ValidateIQN checks an iSCSI name (RFC 3720 3.2.6.3, RFC 3722):
//
//	iqn.YYYY-MM.<reversed domain>[:<unique>]  e.g. iqn.2003-01.org.linux-iscsi.host:disk0
//	eui.<16 hex digits>                       e.g. eui.02004567A425678D
//	naa.<16 or 32 hex digits>
//
// Only the ASCII that stringprep leaves unchanged is accepted in iqn
// names: lower-case letters, digits, '-', '.' and ':'. Upper case would be
// folded by initiators and then not match an ACL.
func ValidateIQN(name string) error {
	if len(name) > maxIQNLen {
		return fmt.Errorf("fabric: iSCSI name %q longer than %d bytes", name, maxIQNLen)
	}
	switch {
	case strings.HasPrefix(name, "eui."):
		if hex := name[4:]; len(hex) != 16 || !isHex(hex) {
			return fmt.Errorf("fabric: %q: eui. takes 16 hex digits", name)
		}
		return nil
	case strings.HasPrefix(name, "naa."):
		return ValidateNAA(name)
	case !strings.HasPrefix(name, "iqn."):
		return fmt.Errorf("fabric: %q: an iSCSI name starts with \"iqn.\", \"eui.\" or \"naa.\"", name)
	}
	rest := name[4:]
	// Date: YYYY-MM, a month in which the naming authority owned the
	// domain.
	if len(rest) < 8 || rest[7] != '.' || rest[4] != '-' ||
		!isDigits(rest[:4]) || !isDigits(rest[5:7]) || rest[5:7] < "01" || rest[5:7] > "12" {
		return fmt.Errorf("fabric: %q: \"iqn.\" must be followed by a date, YYYY-MM, and a dot", name)
	}
	domain, unique, hasUnique := strings.Cut(rest[8:], ":")
	labels := strings.Split(domain, ".")
	for _, l := range labels {
		if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("fabric: %q: bad naming authority %q", name, domain)
		}
		for _, c := range []byte(l) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("fabric: %q: byte %q not allowed in the naming authority", name, c)
			}
		}
	}
	if hasUnique {
		if unique == "" {
			return fmt.Errorf("fabric: %q: empty name after ':'", name)
		}
		for _, c := range []byte(unique) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == ':') {
				return fmt.Errorf("fabric: %q: byte %q not allowed (use a-z 0-9 - . :)", name, c)
			}
		}
	}
	return nil
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// iqnAuthority is the naming authority of default target names: the
// domain LIO's own tools use for generated names (linux-iscsi.org, owned
// since January 2003), followed by the host name.
const iqnAuthority = "iqn.2003-01.org.linux-iscsi."

// DefaultIQN returns a valid target IQN for a LUN name on a host:
// iqn.2003-01.org.linux-iscsi.<host>:lunbridge.<name>. Both parts are
// lower-cased and bytes outside the iSCSI set become '-'; when that
// changed a part, 8 hex digits of its hash keep distinct names distinct.
func DefaultIQN(host, name string) string {
	h := sanitizeLabel(host, false)
	if h == "" {
		h = "localhost"
	}
	return iqnAuthority + h + ":lunbridge." + sanitizeLabel(name, true)
}

// sanitizeLabel maps s onto the iSCSI name bytes. Dots are kept (host
// names are dotted); in the domain part a label may not start or end
// with '-'. unique selects the rules of the part after ':'.
func sanitizeLabel(s string, unique bool) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.':
			b.WriteByte(c)
		case 'A' <= c && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		default:
			b.WriteByte('-')
		}
	}
	out := b.String()
	if !unique {
		labels := strings.Split(out, ".")
		kept := labels[:0]
		for _, l := range labels {
			l = strings.Trim(l, "-")
			if l != "" {
				kept = append(kept, l)
			}
		}
		out = strings.Join(kept, ".")
	}
	if out != s && s != "" {
		out = fmt.Sprintf("%s-%08x", strings.TrimRight(out, "-."), uint32(hash64(s)))
		out = strings.TrimLeft(out, "-.")
	}
	return out
}
