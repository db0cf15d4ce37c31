// SPDX-License-Identifier: Apache-2.0

// Package tcmuservice offers lunbridge to targetcli as a TCMU handler over
// D-Bus.
//
// # The model
//
// targetcli-fb learns which user backstore handlers exist by asking the
// owner of the well-known name org.kernel.TCMUService1 on the system bus
// (tcmu-runner, normally) for its objects: it calls GetManagedObjects of
// org.freedesktop.DBus.ObjectManager on /org/kernel/TCMUService1, and
// every returned object /org/kernel/TCMUService1/<handler> becomes a
// directory /backstores/user:<handler>. Its org.kernel.TCMUService1
// properties feed "help create" (ConfigDesc), and "create" first calls
// CheckConfig(s) -> (b, s) with "<handler>/<cfgstring>"; only when that
// answers true does rtslib write the backstore into configfs with
// dev_config=<handler>/<cfgstring>. (Read in targetcli/ui_backstore.py,
// UIBackstores._user_backstores and UIUserBackedBackstore.)
//
// Service owns that name and exports one handler object. It does not
// serve the backstores: the kernel announces them on the TCM-USER
// generic netlink family and in configfs, which package tcmu reads.
//
// Only one process can own org.kernel.TCMUService1: with tcmu-runner
// running, Start fails with ErrNameTaken and targetcli lists only
// tcmu-runner's handlers.
//
// # Security
//
// The system bus's policy decides who may own the name and call the
// methods; lunbridge ships a policy that allows both to root only
// (packaging/dbus-org.kernel.TCMUService1.conf). CheckConfig only reads
// file metadata (stat of the path and its directory).
package tcmuservice
