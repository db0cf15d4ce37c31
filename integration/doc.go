// SPDX-License-Identifier: Apache-2.0

// Package integration holds the real-kernel tests: they boot a Debian kernel
// under qemu and run lunbridge against its target_core_user, tcm_loop and
// iscsi_target_mod. They run when LUNBRIDGE_INTEGRATION is set.
package integration
