# SPDX-License-Identifier: Apache-2.0
# Guest script of TestPrometheusScrape (lunbridgeLib is prepended): Debian's
# prometheus (the host's, through hostrun) scrapes "lunbridge serve" (its
# config's metrics key) every second while fio writes to the LUN at a fixed
# rate, after one READ past the end; the answers of
# Prometheus' HTTP API, fio's report and the FUSE view's stats go to the
# share for the Go side to compare.
ip link set lo up
cat > /tmp/lb.toml <<EOT
metrics = "127.0.0.1:9573"
[[target]]
  [[target.lun]]
  name = "disk0"
  path = "/tmp/disk0.img"
  size = "64M"
EOT
lb_start /tmp/lb --log-level debug serve --config /tmp/lb.toml
DEV=$(lb_dev /tmp/lb disk0)
[ -b "$DEV" ] || die "no device for disk0"

cat > /tmp/prom.yml <<EOT
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: lunbridge
    static_configs:
      - targets: ["127.0.0.1:9573"]
EOT
hostrun prometheus --config.file=/tmp/prom.yml --storage.tsdb.path=/tmp/prom \
	--web.listen-address=127.0.0.1:9090 --log.level=warn > /tmp/prom.log 2>&1 &
PROM_PID=$!

# q FILE PROMQL: an instant query's JSON answer into the share.
q() {
	hostrun curl -sS --fail-with-body --data-urlencode "query=$2" \
		http://127.0.0.1:9090/api/v1/query > "/mnt/host/$1"
}
query() { q "$@" || die "query $2: $(cat "/mnt/host/$1")"; }
# until_scraped PROMQL: wait until the instant query PROMQL has a result.
until_scraped() {
	_n=0
	until q wait.json "$1" 2>/dev/null && grep -q '"value"' /mnt/host/wait.json; do
		_n=$((_n + 1))
		[ $_n -lt 240 ] || { cat /tmp/prom.log; die "prometheus never saw $1"; }
		sleep 0.5
	done
}
until_scraped 'up{job="lunbridge"} == 1'

# READ(16) of one block at LBA 2^32, far past the end: ILLEGAL REQUEST
# (LBA out of range), counted under sense_key="illegal_request".
if hostrun sg_raw -r 512 "$DEV" 88 00 00 00 00 01 00 00 00 00 00 00 00 01 00 00; then
	die "READ(16) past the end succeeded"
fi
hostrun fio --name=w --filename="$DEV" --rw=write --bs=64k --size=24M --direct=1 \
	--ioengine=psync --rate=4m --output-format=json > /mnt/host/fio.json || die "fio failed"
# Counters are still now: no I/O runs. Wait for a scrape after the last
# write, then take the view's snapshot and make sure Prometheus has a
# scrape at least as new.
sleep 2
cp /run/lunbridge/disk0/stats /mnt/host/stats.txt
WB=$(stat_of /run/lunbridge/disk0/stats write_bytes)
until_scraped "lunbridge_bytes_total{lun=\"disk0\",kind=\"write\"} == $WB"
sleep 1.5
query bytes.json 'lunbridge_bytes_total{lun="disk0"}'
query commands.json 'lunbridge_commands_total{lun="disk0"}'
query errors.json 'sum(lunbridge_errors_total{lun="disk0"})'
query illegal.json 'lunbridge_errors_total{lun="disk0",sense_key="illegal_request"}'
query count.json 'lunbridge_command_duration_seconds_count{lun="disk0",kind="write"}'
query p99.json 'histogram_quantile(0.99, sum by (le) (rate(lunbridge_command_duration_seconds_bucket{lun="disk0",kind="write"}[2m])))'
query rate.json 'max_over_time(rate(lunbridge_bytes_total{lun="disk0",kind="write"}[4s])[2m:1s])'
query inflight.json 'lunbridge_in_flight_commands_max{lun="disk0"}'
query kicks.json 'lunbridge_ring_kicks_total{lun="disk0"}'
query state.json 'lunbridge_state{lun="disk0",state="online"}'
query size.json 'lunbridge_size_bytes{lun="disk0"}'
query process.json 'process_resident_memory_bytes{job="lunbridge"}'
kill $PROM_PID
wait $PROM_PID || true
lb_stop
