// SPDX-License-Identifier: Apache-2.0

// Package lio is lunbridge's LIO policy: which kernel objects a set of
// LUNs becomes. It decides the targets (one loopback target for all loop
// LUNs, one iSCSI target per IQN), the LUN numbers in each (the lowest
// free number, from 0), the default target names (DefaultIQN, derived
// from the host and a target's first LUN), the access plan of an iSCSI
// target (deny by default: only the listed initiators, each with an ACL
// and the CHAP credentials; every initiator only with AllowAnyInitiator,
// logged at Warn each time the target is made), the adoption of objects a
// killed lunbridge left (a backstore of ours is recovered and reused, a
// stale iSCSI target whose LUNs all link our backstores is removed and
// made anew, anything else is refused), and the kernel modules to load.
//
// Kernel implements bridge.Kernel with these decisions; packages tcmu
// (backstores, rings) and fabric (targets) carry them out through the one
// configfs layer, internal/configfs, so the unit tests run the whole
// policy over configfs.Fake.
//
// Settings for one iSCSI target come with every LUN (bridge.ExportSpec);
// LUNs naming the same IQN must agree (SameTarget), or the second one is
// refused: a target's ACL, portal and CHAP are never merged silently.
//
// A reload is planned here too, as lio decides which kernel objects a
// configuration becomes: ApplyReload compares two lists of LUNConfig and
// swaps the LUNs that changed (every LUN of an iSCSI target whose
// settings changed in one swap), each swap all or nothing;
// CheckGatewayReload refuses a reload that would touch a gateway LUN.
//
// One more policy lives here because it decides who serves a LUN:
// Gateways hold the ownership leases (package lease) of the LUNs this
// lunbridge serves as one gateway of an ALUA group (docs/scale-out.md).
// Serving the backstores that targetcli makes is package targetcli's.
package lio
