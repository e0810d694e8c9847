#!/bin/sh
# guest_icount.sh OUT REGMAX ODPMAX DEV...: the in-process cost benchmarks, run inside the
# instruction-clock guest by run-bench (or by hand: tests/lab/run-guest --icount -- sh
# perftest/guest_icount.sh /tmp 16777216 16777216 rxe0). For each DEV: registration cost
# (pinned up to REGMAX, ODP up to ODPMAX), first-touch fault cost (ODP, and present pages),
# fence latency (ODP), the shared mirror's cases (hmr_sharebench: reg/WRITE/dereg rounds,
# invalidation cost against the number of MRs, page-table bytes); and plain memcpy once.
# Writes OUT/{reg,fault,fence,share,memcpy}-<kernel>.csv, and under run-guest --profile
# OUT/fault-profile-<kernel>.csv (perftest/fault_profile.py).
# A device without ODP gets one line in the fault and fence CSVs whose figure is the reason.
set -u
out=$1 regmax=$2 odpmax=$3
shift 3
bin=build/guest-$(uname -r)/user/perftest
"$(dirname "$0")"/hmr-as-installed
k=$(uname -r | cut -d. -f1,2)
reg=$out/reg-$k.csv fault=$out/fault-$k.csv fence=$out/fence-$k.csv share=$out/share-$k.csv
echo device,mode,bytes,reg_ns,dereg_ns,run >"$reg"
echo device,mode,op,bytes,state,median_ns,p99_ns,iters,backing,fault_ns,lookup_ns >"$fault"
echo device,op,samples,p50_ns,p99_ns,max_ns,writes,wr_errors,cpu_p50_ns,cpu_p99_ns,fence_waits,fence_wait_ns,wall_ns,cpu_ns,runq_ns,blocked_ns >"$fence"
echo device,mode,case,n,unit,p50,p99,iters >"$share"
rm -f "$out/fault-profile-$k.csv"
rc=0
# run CSV TOOL ARGS...: append TOOL's CSV lines (without its header) to CSV; remember failures.
run() {
	csv=$1
	shift
	if "$@" >"$out/.run"; then
		tail -n +2 "$out/.run" >>"$csv"
	else
		echo "[$k] failed: $*" >&2
		rc=1
	fi
}
for d in "$@"; do
	if ! ibv_devinfo -d "$d" >/dev/null 2>&1; then
		echo "[$k] $d: no such device here: nothing measured" >&2
		rc=1
		continue
	fi
	echo "[$k] $d: registration" >&2
	run "$reg" "$bin/hmr_regbench" -d "$d" -r 3 -m "$regmax"
	run "$reg" "$bin/hmr_regbench" -d "$d" -o -r 3 -m "$odpmax"
	echo "[$k] $d: first-touch faults" >&2
	run "$fault" "$bin/hmr_faultbench" -d "$d" -r 3 -n 30
	echo "[$k] $d: registration rounds over resident memory" >&2
	run "$share" "$bin/hmr_sharebench" -d "$d" -n 10
	"$bin/hmr_faultbench" -d "$d" -o -r 3 -n 30 >"$out/.odp" 2>"$out/.err"
	case $? in
	0) tail -n +2 "$out/.odp" >>"$fault" ;;
	77)
		# a line whose figure is the reason: the tables' footnote for the empty ODP cells
		echo "[$k] $d has no ODP: no ODP fault or fence rows" >&2
		why="$d on $k has no ODP"
		echo "$d,odp,write,4096,present,$why,$why,0,4k,," >>"$fault"
		echo "$d,dontneed_idle,0,$why,$why,,0,0,,,,,,,," >>"$fence"
		continue
		;;
	*) cat "$out/.err" >&2; rc=1; continue ;;
	esac
	echo "[$k] $d: fence latency" >&2
	run "$fence" "$bin/hmr_fencebench" -d "$d" -o -n 200
	echo "[$k] $d: ODP registration rounds, invalidation against the number of MRs, tables" >&2
	run "$share" "$bin/hmr_sharebench" -d "$d" -o -n 10
done
echo "[$k] the CPU's own first touch (the floor of any fault)" >&2
run "$fault" "$bin/hmr_faultbench" -d cpu -r 3 -n 30
rm -f "$out/.odp" "$out/.err" "$out/.run"
"$bin/hmr_memcpy" -r 3 >"$out/memcpy-$k.csv" || rc=1
# Under run-guest --profile (run-bench): where hmr0's first-touch 4 KiB WRITE goes, by part.
if [ -x /hmr-io/hmr-prof ] && ibv_devinfo -d hmr0 >/dev/null 2>&1; then
	echo "[$k] hmr0: where a first-touch 4 KiB WRITE goes (instruction profile)" >&2
	python3 perftest/fault_profile.py --csv "$out/fault-profile-$k.csv" >&2 || rc=1
fi
exit $rc
