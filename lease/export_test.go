// SPDX-License-Identifier: Apache-2.0

package lease

// What the external tests of this package (luns_test.go, package
// lease_test, which imports bridge, which imports lease) need of the
// internal test helpers.
var (
	ManualGateway = manualGateway
	BecomeOwner   = becomeOwner
	MemberA       = memberA
	MemberB       = memberB
)

// Unlock drops the lease's lock as a file system does when it loses the
// holder (a paused machine).
func (l *Lease) Unlock() { l.unlock() }
