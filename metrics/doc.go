// SPDX-License-Identifier: Apache-2.0

// Package metrics exports the daemon's LUN counters to Prometheus.
//
// # Model
//
// Like the FUSE view, the package holds no state of its own. A Collector
// asks the daemon, through the LUNs interface, for one snapshot of every LUN
// (bridge.LUNInfo with its Stats) per scrape and turns it into constant
// metrics. The FUSE view's stats files and /metrics therefore show the same
// numbers: both are made from the same snapshot type, taken by the same
// call, and neither keeps counters of its own.
//
// Metrics, per LUN (label lun):
//
//	lunbridge_commands_total{lun,kind}        counter  the view's KIND_ops
//	lunbridge_bytes_total{lun,kind}           counter  the view's KIND_bytes
//	lunbridge_errors_total{lun,sense_key}     counter  the view's errors_SENSEKEY
//	lunbridge_command_duration_seconds{lun,kind}
//	                                          histogram the view's latency
//	lunbridge_in_flight_commands{lun}         gauge    in_flight
//	lunbridge_in_flight_commands_max{lun}     gauge    in_flight_max
//	lunbridge_size_bytes{lun}                 gauge    the LUN size
//	lunbridge_read_only{lun}                  gauge    0 or 1
//	lunbridge_state{lun,state}                gauge    1 for the LUN's state
//	                                                   (online, offline,
//	                                                   failed, stalled), 0
//	                                                   for the others
//	lunbridge_lun_info{lun,path,block_size,fabric,fabric_path,serial,naa}
//	                                          gauge    always 1
//	lunbridge_lun_uptime_seconds{lun}         gauge    uptime_seconds
//	lunbridge_build_info{version}             gauge    always 1
//	lunbridge_alua_state{lun,state}           gauge    gateways only: 1 for
//	                                                   the ALUA state, 0 for
//	                                                   the others
//	lunbridge_alua_owner{lun}                 gauge    gateways only: 0 or 1
//	lunbridge_alua_epoch{lun}                 gauge    gateways only: epoch
//	lunbridge_inline_page_cache_reads_total{lun}
//	                                          counter  inline_page_cache_reads
//	lunbridge_inline_page_cache_misses_total{lun}
//	                                          counter  inline_page_cache_misses
//	lunbridge_ring_kicks_total{lun}           counter  ring_kicks
//	lunbridge_ring_wakeups_total{lun}         counter  ring_wakeups
//	lunbridge_ring_handoffs_total{lun}        counter  ring_handoffs
//	lunbridge_snapshots{lun,state}            gauge    snapshots by state
//	                                                   (copying, ready,
//	                                                   failed)
//	lunbridge_snapshot_copied_bytes{lun}      gauge    bytes copied so far by
//	                                                   the snapshots made by
//	                                                   copy
//	lunbridge_snapshot_last_pause_seconds{lun}
//	                                          gauge    the newest snapshot's
//	                                                   pause_us, once there
//	                                                   is one
//
// kind is read, write, sync, unmap, write_same, compare_and_write or other;
// sense_key is the snake_case SPC-4 name (medium_error, not_ready, ...), as
// in the view. Every kind and every sense key is always present, so a rate
// over a series that has not moved yet is 0, not absent. Writing
// reset-stats to a LUN's ctl file resets its counters; Prometheus' rate and
// increase treat that as a counter reset.
//
// # Latency buckets
//
// The histogram is a classic one whose buckets come from bridge's own
// latency histogram, the one the view's latency file shows, so there is one
// source of truth and no second clock per command. bridge keeps four
// buckets per power of two from 1.024µs to 68.7s (106 buckets); /metrics
// exposes only the power-of-two bounds among them (le = 2^10 ns ... 2^36 ns,
// 27 buckets plus +Inf). Each exposed bound is a bound of bridge's
// histogram, so every cumulative count is exact, not interpolated; and 28
// series per kind instead of 107 keeps a LUN at about 200 histogram series,
// which scrapes and stores well. Native histograms are not used: Debian
// 12's Prometheus 2.42 takes them only behind --enable-feature and over the
// protobuf format, and their buckets are geometric within a power of two
// while bridge's are linear, so converting would have to split counts
// between buckets, that is, invent them; the power-of-two bounds are the
// ones both layouts share.
//
// The _sum series is bridge's exact sum of latencies per kind
// (KindStats.LatencySum), so rate(_sum)/rate(_count) is the exact mean
// latency; use the buckets (histogram_quantile) for quantiles.
//
// # Serving
//
// Listen binds the address and Server.Run serves /metrics there, with the
// Go runtime and process collectors, until its context ends. The daemon
// serves nothing unless asked (lunbridge export --metrics ADDR, or
// metrics = "ADDR" in serve's config file, read at start only: SIGHUP does
// not move it). The documented address is 127.0.0.1:9573: loopback, so
// only local scrapers (or a reverse proxy) see the counters and LUN paths,
// and a port in the exporters' 9100-9999 range, whose list of default
// allocations is full, so no number there is free of every other exporter.
// An address with an empty or unspecified host (":9573", "0.0.0.0:9573")
// listens on every interface, and the daemon logs a warning.
package metrics
