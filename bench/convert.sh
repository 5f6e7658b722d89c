#!/bin/bash
# Benchmark: `encroot encrypt` (initial phase, then cutover) of an unencrypted tree against,
# in the same run, the plain pipe `zfs send -R | zfs receive -o encryption=on ...` of the
# same tree; the downtime of cutover (seconds the old tree is unmounted, from encroot's
# JSON) for each size (it must not grow with the data); and the zfs/zpool processes encroot
# starts for a small tree with 3 and with 30 snapshots (they must not grow with snapshots).
# Run in the lab:
#   encroot lab run --out bench-out bench/convert.sh [SIZES_MIB] [ROUNDS]
# SIZES_MIB defaults to "1 256 1024" (the 1 MiB tree gives the fixed cost: encroot's
# seconds beyond the pipe's when there is next to nothing to copy); ROUNDS to 5, the pipe
# and encroot interleaved in each round.  Writes $OUT/bench-convert.json with medians and
# per-round ratios.  Each timed step starts after the pool finished freeing what an
# earlier step destroyed and synced (settle).  Not part of CI; run it on an otherwise
# idle machine.
set -euo pipefail
sizes=${1:-1 256 1024}
rounds=${2:-5}
work=$(mktemp -d /var/tmp/bench.XXXXXX)
printf '%s' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$work/new.hex"
seconds() { echo "$EPOCHREALTIME"; }  # bash's clock: no process in the interval
settle() {  # settle POOL: no freeing or dirty data of an earlier step in the next timing
    zpool wait -t free "$1"; zpool sync "$1"
}
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }

make_tree() {  # make_tree POOL SNAPSHOTS MIB: POOL/tree with two children, MIB of data
    local pool=$1 snaps=$2 mib=$3 per i
    per=$(( mib / snaps / 3 + 1 ))  # MiB per file: at least 1, so 30 snapshots hold 90 MiB
    # room for the tree, its copy and ZFS's slop space (128 MiB on a small pool)
    truncate -s "$(( per * 3 * snaps * 23 / 10 + 256 ))M" "$work/$pool.img"
    zpool create -f -O compression=off -O mountpoint="/$pool" "$pool" "$work/$pool.img"
    zfs create "$pool/tree"; zfs create "$pool/tree/a"; zfs create "$pool/tree/b"
    for i in $(seq "$snaps"); do
        for child in "" /a /b; do
            head -c "$((per << 20))" /dev/urandom > "/$pool/tree$child/f$i"
        done
        zfs snapshot -r "$pool/tree@s$i"
    done
}

declare -a rows
for size in $sizes; do
    for round in $(seq "$rounds"); do
        make_tree "bc$size" 3 "$size"
        pool="bc$size"
        settle "$pool"
        start=$(seconds)
        zfs send -R "$pool/tree@s3" | zfs receive -u -o encryption=on -o keyformat=hex \
            -o keylocation="file://$work/new.hex" "$pool/copy"
        end=$(seconds); t_pipe=$(elapsed "$start" "$end")
        zfs destroy -r "$pool/copy"
        settle "$pool"
        start=$(seconds)
        encroot encrypt --json --phase initial -o keyformat=hex \
            -o keylocation="file://$work/new.hex" "$pool/tree" > "$work/initial.json"
        end=$(seconds); t_initial=$(elapsed "$start" "$end")
        head -c $((8 << 20)) /dev/urandom > "/$pool/tree/late"
        settle "$pool"
        start=$(seconds)
        encroot encrypt --json --phase cutover "$pool/tree" > "$work/cutover.json"
        end=$(seconds); t_cutover=$(elapsed "$start" "$end")
        downtime=$(python3 -c "import json; print(json.load(open('$work/cutover.json'))['phases'][-1]['downtime_seconds'])")
        rows+=("$size $t_pipe $t_initial $t_cutover $downtime")
        echo "size $size MiB round $round: zfs send -R | zfs receive -o encryption=on $t_pipe s;" \
             "encroot initial $t_initial s, cutover $t_cutover s, downtime $downtime s" >&2
        zpool destroy "$pool"; rm -f "$work/$pool.img"
    done
done

count_processes() {  # count_processes SNAPSHOTS: zfs/zpool processes of one encrypt
    local snaps=$1 log="$work/calls-$1.log"
    make_tree "pc$snaps" "$snaps" 6 >/dev/null
    printf '#!/bin/bash\necho zfs >> %s\nexec zfs "$@"\n' "$log" > "$work/zfs-$snaps"
    printf '#!/bin/bash\necho zpool >> %s\nexec zpool "$@"\n' "$log" > "$work/zpool-$snaps"
    chmod +x "$work/zfs-$snaps" "$work/zpool-$snaps"
    ENCROOT_ZFS="$work/zfs-$snaps" ENCROOT_ZPOOL="$work/zpool-$snaps" encroot encrypt \
        -o keyformat=hex -o keylocation="file://$work/new.hex" "pc$snaps/tree" > /dev/null \
        || { echo "count_processes $snaps: encroot encrypt failed" >&2; exit 1; }
    wc -l < "$log"
    zpool destroy "pc$snaps"; rm -f "$work/pc$snaps.img"
}
p3=$(count_processes 3)
p30=$(count_processes 30)

python3 - "$p3" "$p30" "${rows[@]}" <<'PY' | tee "$OUT/bench-convert.json"
import json, statistics, subprocess, sys
runs = {}
for row in sys.argv[3:]:
    size, pipe, initial, cutover, downtime = row.split()
    runs.setdefault(size, []).append({"pipe": float(pipe), "initial": float(initial),
                                      "cutover": float(cutover), "downtime": float(downtime)})
median = statistics.median
smallest = min(runs, key=int)
result = {
    "openzfs": subprocess.run(["zfs", "version"], capture_output=True, text=True).stdout.split(),
    "tree": "unencrypted POOL/tree with children a and b, 3 snapshots, random data",
    "rounds": {size: len(rs) for size, rs in runs.items()},
    "runs": runs,
    "median_seconds": {size: {k: median(r[k] for r in rs) for k in rs[0]}
                       for size, rs in runs.items()},
    "initial_throughput_ratio": {size: round(median(r["pipe"] for r in rs)
                                             / median(r["initial"] for r in rs), 3)
                                 for size, rs in runs.items()},
    "initial_throughput_ratio_per_round": {size: [round(r["pipe"] / r["initial"], 3)
                                                  for r in rs] for size, rs in runs.items()},
    "downtime_seconds": {size: median(r["downtime"] for r in rs) for size, rs in runs.items()},
    "fixed_cost": {"tree_mib": int(smallest),
                   "seconds": round(median(r["initial"] - r["pipe"]
                                           for r in runs[smallest]), 3),
                   "zfs_processes_whole_encrypt": int(sys.argv[1])},
    "zfs_processes": {"3_snapshots": int(sys.argv[1]), "30_snapshots": int(sys.argv[2])},
}
print(json.dumps(result, indent=2))
PY
