// SPDX-License-Identifier: Apache-2.0

package bridge

// LUNInfo describes one LUN as the CLI and the FUSE view show it. It is a
// value: a snapshot taken by LUN.Info or Daemon.List.
type LUNInfo struct {
	Name       string // LUN name: configfs object name and FUSE directory
	Path       string // backing file
	Size       int64  // bytes
	BlockSize  uint32 // logical block size, 512 or 4096
	Serial     string // VPD 0x80 unit serial number
	NAA        string // VPD 0x83 NAA designator, hex
	UIO        string // "/dev/uioN", empty before the device is attached
	Fabric     string // "loop", "iscsi" or "" when not exported
	FabricPath string // "/dev/sdX" for loop, "IQN lun N" for iSCSI
	State      State
	Reason     string // why State is failed or stalled; empty otherwise
	ReadOnly   bool
	WriteCache bool // true: write-back (WCE=1); false: write-through
	Stats      Stats
	// Gateway is the LUN's gateway group state; nil when the LUN is
	// not one of several gateways (Options.Gateway).
	Gateway *GatewayInfo
	// Snapshots are the LUN's snapshots, by name.
	Snapshots []SnapshotInfo
}

// State is a LUN's availability to initiators.
type State uint8

// LUN states.
const (
	StateOnline  State = iota // serving commands
	StateOffline              // answering NOT READY, set by an operator
	StateFailed               // the ring or backing store failed; see the log
	StateStalled              // a command has been stuck in the backing store
)

func (s State) String() string {
	switch s {
	case StateOnline:
		return "online"
	case StateOffline:
		return "offline"
	case StateFailed:
		return "failed"
	case StateStalled:
		return "stalled"
	}
	return "unknown"
}
