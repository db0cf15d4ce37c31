#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench-chart.sh OUT.png CHART.tsv...: draw the fio benchmark as a PNG with
# gnuplot: one panel per setup and job, one bar per target (lunbridge,
# tcmu-runner, fileio, raw: those the runs have), MiB/s for the sequential
# jobs and thousands of IOPS for the 4k ones. Each CHART.tsv is one boot's
# chart.tsv (TestBenchFio writes it next to report.md); with several, a bar
# is the median over the boots and its whisker spans the lowest to the
# highest, so the chart shows the spread as well as the level.
# BENCH_CHART_TITLE replaces the title's first part. scripts/bench.sh runs
# it after every benchmark. gnuplot-nox is installed
# with apt-get when missing: only the benchmark needs it.
set -euo pipefail

if [ $# -lt 2 ]; then
	echo "usage: $0 OUT.png CHART.tsv..." >&2
	exit 2
fi
png=$1
shift
if ! command -v gnuplot >/dev/null; then
	sudo=
	[ "$(id -u)" = 0 ] || sudo=sudo
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One block per setup and job (gnuplot's "index"), blocks separated by two
# blank lines: target, median, min, max, its colour. The panel titles go
# to panels.txt, one a line in block order; how many boots to
# panels.txt.note.
awk -F'\t' -v dat="$tmp/data" -v panels="$tmp/panels.txt" '
	BEGIN { rank["lunbridge"] = 1; rank["tcmu-runner"] = 2; rank["fileio"] = 3; rank["raw"] = 4 }
	/^#/ || NF < 5 { next }
	$3 != "lunbridge" && $3 != "tcmu-runner" && $3 != "fileio" && $3 != "raw" { next }
	{
		k = $1 SUBSEP $2
		if (!(k in seen)) { seen[k] = 1; order[++n] = k }
		t = k SUBSEP $3
		if (!(t in nv)) { has[t] = 1 }
		v = ($2 ~ /^seq/) ? $4 : $5 / 1000
		vals[t, ++nv[t]] = v
	}
	END {
		for (i = 1; i <= n; i++) {
			k = order[i]
			split(k, sj, SUBSEP)
			unit = (sj[2] ~ /^seq/) ? "MiB/s" : "kIOPS"
			# the targets in a fixed order, so every panel reads alike
			m = 0
			split("lunbridge tcmu-runner fileio raw", all, " ")
			for (j = 1; j <= 4; j++) if ((k SUBSEP all[j]) in has) ts[++m] = all[j]
			boots = 0
			for (j = 1; j <= m; j++) {
				t = k SUBSEP ts[j]
				c = nv[t]
				# insertion sort of this target'"'"'s values
				for (a = 1; a <= c; a++) s[a] = vals[t, a]
				for (a = 2; a <= c; a++) {
					x = s[a]
					for (b = a - 1; b >= 1 && s[b] > x; b--) s[b + 1] = s[b]
					s[b + 1] = x
				}
				med = (c % 2) ? s[(c + 1) / 2] : (s[c / 2] + s[c / 2 + 1]) / 2
				printf "%s\t%.3f\t%.3f\t%.3f\t%d\n", ts[j], med, s[1], s[c], rank[ts[j]] > dat
				if (c > boots) boots = c
			}
			printf "\n\n" > dat
			if (boots > maxboots) maxboots = boots
			printf "%s: %s, %s\n", sj[1], sj[2], unit > panels
		}
		note = "one boot"
		if (maxboots > 1) note = "median of " maxboots " boots, whiskers from lowest to highest"
		print note > (panels ".note")
	}' "$@"

n=$(wc -l < "$tmp/panels.txt")
if [ "$n" = 0 ]; then
	echo "$0: no lunbridge, tcmu-runner, fileio or raw runs in $*" >&2
	exit 1
fi
cols=$((n < 3 ? n : 3))
rows=$(((n + cols - 1) / cols))
{
	echo "set terminal pngcairo size $((cols * 420)),$((rows * 320 + 40)) font 'DejaVu Sans,10'"
	echo "set output '$png'"
	echo "set multiplot layout $rows,$cols title '${BENCH_CHART_TITLE:-lunbridge benchmark: fio, libaio, direct I/O} ($(cat "$tmp/panels.txt.note"))'"
	echo "set style fill solid 0.6 border -1"
	echo "set boxwidth 0.6"
	echo "set yrange [0:*]"
	echo "set offsets 0, 0, graph 0.12, 0"
	echo "set grid ytics"
	echo "set key off"
	echo "set xtics nomirror"
	i=0
	while IFS= read -r title; do
		echo "set title \"$title\" font ',10'"
		echo "plot '$tmp/data' index $i using 0:2:5:xtic(1) with boxes lc variable, \\"
		echo "     '' index $i using 0:2:3:4 with yerrorbars lc rgb 'black' pt 0, \\"
		echo "     '' index $i using 0:4:(sprintf(\$2 >= 100 ? '%.0f' : '%.3g', \$2)) with labels offset 0,0.8 font ',9'"
		i=$((i + 1))
	done < "$tmp/panels.txt"
	echo "unset multiplot"
} > "$tmp/chart.gp"
gnuplot "$tmp/chart.gp"
echo "$png"
