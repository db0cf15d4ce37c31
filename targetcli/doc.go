// SPDX-License-Identifier: Apache-2.0

// Package targetcli serves the TCMU backstores that someone else creates
// for lunbridge: targetcli, or targetctl restoring a saved configuration
// (serve only).
//
// lunbridge answers targetcli's D-Bus questions as the TCMU handler
// "lunbridge" (package tcmuservice) and serves every backstore
// /backstores/user:lunbridge that someone else writes into configfs.
// Such a backstore has dev_config "lunbridge/<absolute path>"; the
// backstores of lunbridge's own LUNs have "lunbridge/<LUN name>", and a
// LUN name has no '/', so the two never mix. Other handlers' backstores
// (tcmu-runner's "file/...", "rbd/...") are never looked at:
// tcmu.ListDevices skips them.
//
// A found backstore becomes a LUN named after it, backed by the file of
// its cfgstring (created sparse, or grown, to its dev_size); targetcli
// owns its configfs objects and fabric links, so lunbridge only opens
// its UIO device and on shutdown or removal only closes it again.
//
// Discovery is a bridge.Kernel that wraps the daemon's own (lio.Kernel):
// it adopts the found devices and passes every other LUN on. Start scans
// configfs, then rescans on TCM-USER netlink events and every few
// seconds. The package sits beside lio, not in it: lio decides which
// kernel objects lunbridge's own LUNs become, while this package only
// attaches to objects another tool made.
package targetcli
