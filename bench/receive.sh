#!/bin/bash
# Benchmark: `zfs send -w | encroot receive` against `zfs send -w | zfs receive`
# of the same raw stream, in the same guest run; and the online replacement's
# swap window: the seconds from unmounting the old, mounted target to the new
# tree standing at its name (it must not grow with the stream).  Each round times
# plain zfs receive, a new target and a replacement, each after the pool finished
# freeing the previous copy, in an order that turns round by round.  Run in the lab:
#   encroot lab run --out bench-out bench/receive.sh [SIZE_MIB] [ROUNDS] [swap|pass]
# With "swap" only the swap window is measured; with "pass" only the pass-through
# (`encroot receive` with zfs's own options only, which hands over to zfs receive)
# against plain `zfs receive`, interleaved round by round with the order alternating,
# each after the pool finished freeing the previous copy (zpool wait -t free), and its
# fixed cost measured on its own: 20 alternating starts of each on an empty stream
# (both fail at once, "cannot receive: failed to read from stream").  Prints a table
# and writes $OUT/bench-receive-SIZE_MIB.json, with the fixed cost of a new target and
# of a replacement beside plain zfs receive (medians) and the zfs/zpool processes each
# starts.  Not part of CI (heavy).
set -euo pipefail
size_mib=${1:-1024}
rounds=${2:-3}
only=${3:-}
work=$(mktemp -d /var/tmp/bench.XXXXXX)
trap 'zpool destroy -f bsrc 2>/dev/null; zpool destroy -f bdst 2>/dev/null; rm -rf "$work"' EXIT
pool_mib=$(( size_mib * 13 / 10 + 128 ))
truncate -s "${pool_mib}M" "$work/src.img" "$work/dst.img"
zpool create -f -O mountpoint=/bsrc bsrc "$work/src.img"
zpool create -f -O mountpoint=/bdst bdst "$work/dst.img"
echo -n 'correct horse battery' | zfs create -o encryption=on -o keyformat=passphrase \
    -o keylocation=prompt -o compression=off bsrc/fs
echo "writing ${size_mib} MiB of random data" >&2
head -c "$((size_mib << 20))" /dev/urandom > /bsrc/fs/data
zfs snapshot bsrc/fs@A
stream_bytes=$(zfs send -w -nP bsrc/fs@A | awk '/^size/ {print $2}')

timed() {  # timed COMMAND... -> prints elapsed seconds (bash's own clock: no process)
    local start end
    start=$EPOCHREALTIME; "$@"; end=$EPOCHREALTIME
    awk "BEGIN { printf \"%.3f\\n\", $end - $start }"
}
plain() { zfs send -w bsrc/fs@A | zfs receive -u bdst/plain; }
create() {
    zfs send -w bsrc/fs@A | encroot receive -F -u --allow-encryption-change bdst/new > /dev/null
}
pass_through() { zfs send -w bsrc/fs@A | encroot receive -u bdst/pass; }
replace() {
    zfs send -w bsrc/fs@A | encroot receive -F -u --allow-encryption-change bdst/old > /dev/null
}

# The online replacement of a mounted bdst/live (-v prints each step as it starts, so
# the "unmount:" line comes right before the old tree is unmounted and the
# "destroy-old:" line right after the new tree was renamed to bdst/live). Prints
# "SECONDS MOUNTED" (MOUNTED: the old tree was still mounted once the new one was
# verified).
swap() {
    zfs create bdst/live; echo old > /bdst/live/file
    zfs send -w bsrc/fs@A | encroot receive -v -F -u --allow-encryption-change bdst/live \
        2>&1 >/dev/null | python3 -c '
import subprocess, sys, time
stamps, mounted = {}, "?"
for line in sys.stdin:
    now = time.monotonic()
    step = line.split(":", 1)[0]
    stamps.setdefault(step, now)
    if step == "mark-verified":
        mounted = subprocess.run(["zfs", "get", "-H", "-o", "value", "mounted", "bdst/live"],
                                 capture_output=True, text=True).stdout.strip()
window = stamps["destroy-old"] - stamps["unmount"]
print(f"{window:.3f} {mounted}")'
    zfs destroy -r bdst/live
}

settled() {  # the pool is done freeing what was destroyed, and synced
    zpool wait -t free bdst; zpool sync bdst
}

declare -a t_plain t_create t_replace t_swap m_swap t_pass s_plain s_pass
if [ "$only" = pass ]; then
    for start in $(seq 20); do
        s_plain+=("$(timed eval 'zfs receive -u bdst/none < /dev/null 2>/dev/null || true')")
        s_pass+=("$(timed eval 'encroot receive -u bdst/none < /dev/null 2>/dev/null || true')")
    done
fi
for round in $(seq "$rounds"); do
    if [ "$only" = pass ]; then
        # alternate which goes first
        if [ $((round % 2)) = 1 ]; then
            settled; t_plain+=("$(timed plain)"); zfs destroy -r bdst/plain
            settled; t_pass+=("$(timed pass_through)"); zfs destroy -r bdst/pass
        else
            settled; t_pass+=("$(timed pass_through)"); zfs destroy -r bdst/pass
            settled; t_plain+=("$(timed plain)"); zfs destroy -r bdst/plain
        fi
        echo "round $round: plain ${t_plain[-1]} s, pass-through ${t_pass[-1]} s (ratio" \
             "$(python3 -c "print(round(${t_plain[-1]} / ${t_pass[-1]}, 3))"))" >&2
        continue
    fi
    # synchronously: a process substitution would let the next round start before this
    # round's bdst/live is destroyed
    swap > "$work/swap.out" || { echo "round $round: the online replacement failed" >&2; exit 1; }
    read -r window mounted < "$work/swap.out"
    t_swap+=("$window"); m_swap+=("$mounted")
    if [ "$only" = swap ]; then
        echo "round $round: swap window $window s (old tree mounted until then: $mounted)" >&2
        continue
    fi
    # each after the pool finished freeing the previous copy; the order turns each round
    order=(plain create replace)
    for turn in $(seq $(( (round - 1) % 3 ))); do order=("${order[@]:1}" "${order[0]}"); done
    for run in "${order[@]}"; do
        case $run in
            plain) settled; t_plain+=("$(timed plain)"); zfs destroy -r bdst/plain ;;
            create) settled; t_create+=("$(timed create)"); zfs destroy -r bdst/new ;;
            replace)
                zfs create bdst/old; echo old > /bdst/old/file; zfs unmount bdst/old
                settled; t_replace+=("$(timed replace)"); zfs destroy -r bdst/old ;;
        esac
    done
    echo "round $round: plain ${t_plain[-1]} s, create ${t_create[-1]} s, replace ${t_replace[-1]} s, swap window $window s (old tree mounted until then: $mounted)" >&2
done
# The zfs/zpool processes one receive starts, its zfs receive included: stand-ins on
# ENCROOT_ZFS/ENCROOT_ZPOOL log each call, then exec the real program.
printf '#!/bin/bash\necho "$1" >> %s\nexec zfs "$@"\n' "$work/calls.log" > "$work/zfs-count"
printf '#!/bin/bash\necho zpool >> %s\nexec zpool "$@"\n' "$work/calls.log" > "$work/zpool-count"
chmod +x "$work/zfs-count" "$work/zpool-count"
counted() {  # counted COMMAND...: prints the zfs/zpool processes encroot started in it
    : > "$work/calls.log"
    ENCROOT_ZFS="$work/zfs-count" ENCROOT_ZPOOL="$work/zpool-count" "$@" > /dev/null
    wc -l < "$work/calls.log"
}
pass_processes="" create_processes="" replace_processes=""
if [ "$only" = pass ]; then
    pass_processes=$(counted pass_through); zfs destroy -r bdst/pass
elif [ -z "$only" ]; then
    create_processes=$(counted create); zfs destroy -r bdst/new
    zfs create bdst/old; echo old > /bdst/old/file; zfs unmount bdst/old
    replace_processes=$(counted replace); zfs destroy -r bdst/old
fi
peek_ms=$(zfs send -w bsrc/fs@A | python3 -c '
import sys, time
from encroot.stream import peek_stream
start = time.perf_counter()
peeked = peek_stream(sys.stdin.fileno())
print(f"{(time.perf_counter() - start) * 1000:.2f}")
' 2>/dev/null || true)

python3 - "$stream_bytes" "$peek_ms" "${t_plain[*]:-}" "${t_create[*]:-}" "${t_replace[*]:-}" \
    "${t_swap[*]:-}" "${m_swap[*]:-}" "${t_pass[*]:-}" "$pass_processes" "${s_plain[*]:-}" \
    "${s_pass[*]:-}" "$create_processes" "$replace_processes" <<'PY' | tee "$OUT/bench-receive-$size_mib.json"
import json, statistics, subprocess, sys
stream_bytes, peek_ms = int(sys.argv[1]), float(sys.argv[2] or "nan")
runs = {name: [float(x) for x in sys.argv[i].split()] for i, name in
        ((3, "zfs_receive"), (4, "encroot_receive_new_target"), (5, "encroot_receive_replace"),
         (8, "encroot_receive_pass_through"))
        if sys.argv[i].strip()}
median = {name: statistics.median(times) for name, times in runs.items()}
base = median.get("zfs_receive")
swap = [float(x) for x in sys.argv[6].split()]
starts = {name: [float(x) for x in sys.argv[i].split()] for i, name in
          ((10, "zfs_receive"), (11, "encroot_receive_pass_through")) if sys.argv[i].strip()}
start_median = {name: statistics.median(times) for name, times in starts.items()}
per_round = {name: [round(t - b, 3) for b, t in zip(runs["zfs_receive"], runs[name])]
             for name in ("encroot_receive_new_target", "encroot_receive_replace")
             if base and name in runs}
result = {
    "openzfs": subprocess.run(["zfs", "version"], capture_output=True, text=True).stdout.split(),
    "stream_bytes": stream_bytes,
    "runs_seconds": runs,
    "median_seconds": median,
    "throughput_MBps": {k: round(stream_bytes / v / 1e6, 1) for k, v in median.items()},
    "throughput_ratio_vs_zfs_receive": {k: round(base / v, 3) for k, v in median.items()}
    if base else {},
    "throughput_ratio_per_round": {
        name: [round(b / t, 3) for b, t in zip(runs["zfs_receive"], times)]
        for name, times in runs.items() if name != "zfs_receive"} if base else {},
    "start_up_seconds_empty_stream": starts,
    "start_up_median_seconds": start_median,
    "pass_through_fixed_cost": {
        "seconds": round(start_median["encroot_receive_pass_through"]
                         - start_median["zfs_receive"], 3),
        "zfs_processes_including_the_receive": int(sys.argv[9])}
    if len(start_median) == 2 else {},
    "fixed_cost_seconds_vs_zfs_receive": {
        name: round(median[name] - base, 3) for name in
        ("encroot_receive_new_target", "encroot_receive_replace") if name in median}
    if base else {},
    # the same, round by round (encroot minus plain zfs receive of that round), and the
    # median of those: the machine's speed drifts between rounds, less within one
    "fixed_cost_seconds_per_round": per_round,
    "fixed_cost_median_of_rounds_seconds": {
        name: round(statistics.median(costs), 3) for name, costs in per_round.items()},
    "zfs_processes": {name: int(sys.argv[i]) for i, name in
                      ((9, "pass_through"), (12, "new_target"), (13, "replace"))
                      if sys.argv[i].strip()},
    "header_peek_ms": peek_ms,
    "swap_window_seconds": swap,
    "swap_window_median_seconds": statistics.median(swap) if swap else None,
    "old_tree_mounted_until_swap": sys.argv[7].split(),
}
print(json.dumps(result, indent=2))
PY
