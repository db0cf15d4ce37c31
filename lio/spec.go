// SPDX-License-Identifier: Apache-2.0

package lio

import (
	"errors"
	"fmt"
	"slices"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/fabric"
	"github.com/lunbridge/lunbridge/tcmu"
)

// Fabrics a LUN can be exported through.
const (
	FabricLoop  = "loop"  // tcm_loop: a local /dev/sdX
	FabricISCSI = "iscsi" // iscsi_target_mod
	FabricNone  = "none"  // a backstore only
)

// Defaults of the policy, for the CLI and the config file.
const (
	DefaultFabric      = FabricLoop
	DefaultPortal      = fabric.DefaultPortal
	DefaultCmdTimeout  = tcmu.DefaultCmdTimeout
	DefaultBlockSize   = tcmu.DefaultBlockSize
	DefaultConfigfs    = tcmu.DefaultConfigfsRoot
	DefaultMaxTransfer = bridge.DefaultMaxTransfer
)

// ErrISCSIOnly is returned for iSCSI settings on a loop or none export.
var ErrISCSIOnly = errors.New("IQN, initiators, CHAP and allow-any-initiator need the iscsi fabric")

// DefaultIQN is the one place target names are derived: the IQN of an
// iSCSI target that names none, from the host and the name of its first
// LUN (fabric.DefaultIQN).
func DefaultIQN(host, firstLUN string) string {
	if host == "" {
		host = "localhost"
	}
	return fabric.DefaultIQN(host, firstLUN)
}

// Resolve checks spec and fills its defaults: the fabric (loop), the
// portal, and the IQN of an iSCSI target without one (DefaultIQN of host
// and firstLUN). An iSCSI spec with no initiators and no
// AllowAnyInitiator is valid: its target admits nobody.
func Resolve(spec bridge.ExportSpec, host, firstLUN string) (bridge.ExportSpec, error) {
	if spec.Fabric == "" {
		spec.Fabric = DefaultFabric
	}
	switch spec.Fabric {
	case FabricLoop, FabricNone:
		if spec.IQN != "" || len(spec.Initiators) > 0 || spec.AllowAnyInitiator || spec.CHAPUser != "" || spec.CHAPPassword != "" ||
			spec.MutualUser != "" || spec.MutualPassword != "" {
			return spec, ErrISCSIOnly
		}
		spec.Portal = ""
		return spec, nil
	case FabricISCSI:
	default:
		return spec, fmt.Errorf("fabric %q: want loop, iscsi or none", spec.Fabric)
	}
	if spec.Portal == "" {
		spec.Portal = DefaultPortal
	}
	if spec.IQN == "" {
		spec.IQN = DefaultIQN(host, firstLUN)
	}
	spec.Initiators = slices.Clone(spec.Initiators)
	t := fabric.ISCSITarget{
		IQN: spec.IQN, Portal: spec.Portal, Initiators: spec.Initiators,
		AllowAnyInitiator: spec.AllowAnyInitiator,
		CHAPUser:          spec.CHAPUser, CHAPPassword: spec.CHAPPassword,
		MutualUser: spec.MutualUser, MutualPassword: spec.MutualPassword,
	}
	if err := t.Validate(); err != nil {
		return spec, err
	}
	return spec, nil
}

// SameTarget returns an error naming the first setting in which two
// resolved iSCSI specs for the same IQN differ: LUNs of one target share
// its portal, ACL and CHAP, so a difference is a conflict to refuse, not
// one to merge. Specs of different targets never conflict.
func SameTarget(a, b bridge.ExportSpec) error {
	if a.Fabric != FabricISCSI || b.Fabric != FabricISCSI || a.IQN != b.IQN {
		return nil
	}
	ai, bi := slices.Sorted(slices.Values(a.Initiators)), slices.Sorted(slices.Values(b.Initiators))
	var what string
	switch {
	case a.Portal != b.Portal:
		what = fmt.Sprintf("portal %s and %s", a.Portal, b.Portal)
	case !slices.Equal(ai, bi):
		what = fmt.Sprintf("initiators %v and %v", ai, bi)
	case a.AllowAnyInitiator != b.AllowAnyInitiator:
		what = "allow-any-initiator"
	case a.CHAPUser != b.CHAPUser || a.CHAPPassword != b.CHAPPassword ||
		a.MutualUser != b.MutualUser || a.MutualPassword != b.MutualPassword:
		what = "CHAP credentials"
	default:
		return nil
	}
	return fmt.Errorf("iSCSI target %s given two settings: %s", a.IQN, what)
}
