// SPDX-License-Identifier: Apache-2.0

package scsi

// Helpers for the scatter-gather data buffers of a command (the TCMU
// iovecs).

// bufLen is the total length of bufs.
func bufLen(bufs [][]byte) int {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	return n
}

// scatter copies src into bufs in order and returns the number of bytes
// copied (less than len(src) if the buffers are shorter).
func scatter(bufs [][]byte, src []byte) int {
	n := 0
	for _, b := range bufs {
		if n == len(src) {
			break
		}
		n += copy(b, src[n:])
	}
	return n
}

// gather returns the first n bytes of bufs (fewer if they are shorter) as
// one slice; it copies only when they span more than one buffer.
func gather(bufs [][]byte, n int) []byte {
	if len(bufs) > 0 && len(bufs[0]) >= n {
		return bufs[0][:n]
	}
	out := make([]byte, 0, n)
	for _, b := range bufs {
		if len(out) == n {
			break
		}
		out = append(out, b[:min(len(b), n-len(out))]...)
	}
	return out
}

// prefix returns buffers covering the first n bytes of bufs (n at most
// their total), sharing their memory.
func prefix(bufs [][]byte, n int) [][]byte {
	out := make([][]byte, 0, len(bufs))
	for _, b := range bufs {
		if n == 0 {
			break
		}
		k := min(len(b), n)
		if k > 0 {
			out = append(out, b[:k])
		}
		n -= k
	}
	return out
}

// reply copies a data-in payload into bufs, truncated to the allocation
// length alloc (SPC-5), zeroes the rest of bufs (see zeroFrom), and
// returns the Result that reports how many bytes went in.
func reply(bufs [][]byte, payload []byte, alloc uint32) Result {
	if uint64(len(payload)) > uint64(alloc) {
		payload = payload[:alloc]
	}
	n := scatter(bufs, payload)
	zeroFrom(bufs, n)
	return Result{DataIn: n}
}

// skipScatter copies src into bufs starting skip bytes in.
func skipScatter(bufs [][]byte, skip int, src []byte) {
	for _, b := range bufs {
		if len(src) == 0 {
			return
		}
		if skip >= len(b) {
			skip -= len(b)
			continue
		}
		k := copy(b[skip:], src)
		src, skip = src[k:], 0
	}
}

// zeroFrom zeroes bufs from byte n on. A data-in command that fills only
// part of its buffers leaves the rest zeroed: TCMU's rsp.read_len, which
// tells the kernel how much to send, cannot be 0 (the kernel then sends
// the whole buffer), and without the READ_LEN capability the whole buffer
// is always sent; either way the initiator must not get stale bytes of
// the data area.
func zeroFrom(bufs [][]byte, n int) {
	for _, b := range bufs {
		if n >= len(b) {
			n -= len(b)
			continue
		}
		clear(b[n:])
		n = 0
	}
}

// paramList returns the parameter list of a data-out command: the first
// length bytes of bufs, or fewer if the initiator sent fewer.
func paramList(bufs [][]byte, length uint32) []byte {
	return gather(bufs, int(min(uint64(length), uint64(bufLen(bufs)))))
}
