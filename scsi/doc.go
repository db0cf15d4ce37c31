// Package scsi decodes SCSI CDBs and emulates an SBC-4/SPC-5 direct-access
// block device. It does no I/O of its own: data operations go through the
// Backend interface, which package bridge implements over a file.
package scsi
