// Package fusefs serves the lunbridge FUSE view: one directory per LUN with
// live statistics and control files.
package fusefs
