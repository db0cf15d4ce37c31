// Package tcmu speaks the kernel side of TCMU (target_core_user): the
// configfs lifecycle of a user backstore, its UIO device, and the command
// ring shared with the kernel through mmap.
package tcmu
