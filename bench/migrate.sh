#!/bin/bash
# Benchmark: `encroot migrate` (as two commands, initial then cutover with re-parenting,
# verification and the cold start; and as one command) against, in the same run:
# `zfs send -Rw | zfs receive` of the same tree up to its newest snapshot (the bare
# transfer); the same pipe after a fresh `zfs snapshot -r` (the stream encroot's initial
# phase sends, up to its own goal snapshot); and the same migration typed by hand with
# plain zfs commands (a snapshot and its full stream into a staging child, a final
# snapshot and its incremental stream, load-key, change-key -i, renames, destroy, export,
# import under an altroot, load-key, mount, export, import: the steps encroot runs,
# without its reads, checks and Python).
# Run in the lab:
#   encroot lab run --out bench-out bench/migrate.sh [SIZE_MIB] [ROUNDS] [remote]
# "remote" runs the remote mode instead, bench/migrate-remote.sh: `encroot migrate` to a
# pool reached over SSH against `zfs send -Rw | ssh HOST zfs receive`.
# Each round runs the five ways in an order that turns round by round; the initial
# phase's fixed cost (its seconds minus each bare pipe's) is reported round by round.
# Also counts the zfs/zpool processes encroot starts for a small tree with 3 and with 30
# snapshots (they must not grow with snapshots).  Writes $OUT/bench-migrate.json.
# Not part of CI (heavy).
set -euo pipefail
size_mib=${1:-1024}
rounds=${2:-3}
if [ "${3:-}" = remote ]; then
    remote_mode="$(dirname "$0")/migrate-remote.sh"
    # the lab copies this script alone and runs it in the checkout
    [ -f "$remote_mode" ] || remote_mode=bench/migrate-remote.sh
    exec bash "$remote_mode" "$size_mib" "$rounds"
fi
work=$(mktemp -d /var/tmp/bench.XXXXXX)
pool_mib=$(( size_mib * 13 / 10 + 256 ))
echo -n 'correct horse battery' > "$work/src.key"
echo -n 'another pass phrase' > "$work/dst.key"
seconds() { echo "$EPOCHREALTIME"; }  # bash's clock: no process in the interval

make_source() {  # make_source POOL SNAPSHOTS MIB: an encrypted root with three child trees
    local pool=$1 snaps=$2 mib=$3
    truncate -s "${pool_mib}M" "$work/$pool.img"
    zpool create -f -O encryption=on -O keyformat=passphrase -O keylocation=prompt \
        -O compression=off -O mountpoint="/$pool" "$pool" "$work/$pool.img" < "$work/src.key"
    zfs create -p "$pool/data/projects/2026"; zfs create "$pool/home"
    zfs create -o canmount=off -o mountpoint=none "$pool/ROOT"
    zfs create -o canmount=noauto -o mountpoint="/$pool-be" "$pool/ROOT/default"
    local per=$(( mib / snaps / 3 + 1 )) i
    for i in $(seq "$snaps"); do
        head -c "$((per << 20))" /dev/urandom > "/$pool/data/projects/2026/f$i"
        head -c "$((per << 20))" /dev/urandom > "/$pool/home/f$i"
        head -c "$((per << 20))" /dev/urandom > "/$pool/data/f$i"
        zfs snapshot -r "$pool@s$i"
    done
}
make_destination() {  # one file vdev (the guest's disk cannot hold a mirror of 1 GiB
    # beside SRC; the lab tests migrate onto mirrors), encrypted with its own passphrase
    truncate -s "${pool_mib}M" "$work/$1.img"
    zpool create -f -O encryption=on -O keyformat=passphrase -O keylocation=prompt \
        -O mountpoint="/$1" "$1" "$work/$1.img" < "$work/dst.key"
}

by_hand() {  # by_hand DST: the migration of bsrc into DST with plain zfs commands, in
    # encroot's two phases: a snapshot and its full stream, then a final snapshot and its
    # incremental (encroot's initial phase, too, sends up to a snapshot of its own)
    local dst=$1 child
    zfs snapshot -r bsrc@by-hand-initial
    zfs send -Rw bsrc@by-hand-initial | zfs receive -u "$dst/staging"
    zfs snapshot -r bsrc@by-hand
    zfs send -Rw -I bsrc@by-hand-initial bsrc@by-hand | zfs receive -u "$dst/staging"
    zfs load-key -L "file://$work/src.key" "$dst/staging"
    zfs change-key -i "$dst/staging"
    for child in data home ROOT; do zfs rename -u "$dst/staging/$child" "$dst/$child"; done
    zfs destroy -r "$dst/staging"
    zpool export "$dst"; zpool import -N -R "$work/altroot" -d "$work" "$dst"
    zfs load-key -L "file://$work/dst.key" "$dst"
    for child in "" /data /data/projects /data/projects/2026 /home /ROOT/default; do
        zfs mount "$dst$child"
    done
    zpool export "$dst"; zpool import -N -d "$work" "$dst"
}

echo "writing ${size_mib} MiB of random data in 3 snapshots" >&2
make_source bsrc 3 "$size_mib"
plain_bytes=$(zfs send -Rw -nP "bsrc@s3" | awk '/^size/ {print $2}')
declare -a t_plain t_goal t_manual t_initial t_cutover t_all b_encroot
keys=(--key-file "$work/src.key" --new-key-file "$work/dst.key")
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }
drop_encroot_snapshots() {
    local snap
    for snap in $(zfs list -H -o name -t snapshot -d 1 bsrc | grep @encroot-migrate-); do
        zfs destroy -r "$snap"
    done
}
run_plain() {
    make_destination bplain
    start=$(seconds); zfs send -Rw bsrc@s3 | zfs receive -u bplain/copy; end=$(seconds)
    t_plain+=("$(elapsed "$start" "$end")"); zpool destroy bplain
    rm -f "$work/bplain.img"
}
run_same_stream() {  # the bare pipe of the stream encroot's initial phase sends: a fresh
    # recursive snapshot (encroot's goal), then zfs send -Rw up to it
    make_destination bgoal
    start=$(seconds)
    zfs snapshot -r bsrc@bare-goal
    zfs send -Rw bsrc@bare-goal | zfs receive -u bgoal/copy
    end=$(seconds)
    t_goal+=("$(elapsed "$start" "$end")"); zpool destroy bgoal
    zfs destroy -r bsrc@bare-goal; rm -f "$work/bgoal.img"
}
run_by_hand() {
    make_destination bman
    start=$(seconds); by_hand bman; end=$(seconds)
    t_manual+=("$(elapsed "$start" "$end")"); zpool destroy bman
    # SRC's snapshots are dropped after the clock stops, as encroot's are
    zfs destroy -r bsrc@by-hand-initial; zfs destroy -r bsrc@by-hand
    rm -f "$work/bman.img"
}
run_phases() {  # initial, then cutover
    make_destination bdst
    start=$(seconds)
    encroot migrate --json --phase initial bsrc bdst > "$work/initial.json"
    middle=$(seconds)
    encroot migrate --json --phase cutover "${keys[@]}" bsrc bdst > "$work/cutover.json"
    end=$(seconds)
    t_initial+=("$(elapsed "$start" "$middle")"); t_cutover+=("$(elapsed "$middle" "$end")")
    b_encroot+=("$(python3 -c "import json; print(sum(p['transferred_bytes'] for f in ('initial', 'cutover') for p in json.load(open('$work/' + f + '.json'))['phases']))")")
    zpool destroy bdst; rm -f "$work/bdst.img"
    drop_encroot_snapshots
}
run_one_command() {
    make_destination bdst
    start=$(seconds)
    encroot migrate --json "${keys[@]}" bsrc bdst > "$work/all.json"
    end=$(seconds)
    t_all+=("$(elapsed "$start" "$end")")
    zpool destroy bdst; rm -f "$work/bdst.img"
    drop_encroot_snapshots
}
for round in $(seq "$rounds"); do
    # the order turns round by round, so that no way is always first or last
    order=(run_plain run_same_stream run_by_hand run_phases run_one_command)
    for turn in $(seq $(( (round - 1) % 5 ))); do order=("${order[@]:1}" "${order[0]}"); done
    for run in "${order[@]}"; do "$run"; done
    echo "round $round (${order[*]}): zfs send -Rw | zfs receive ${t_plain[-1]} s; with a" \
         "fresh snapshot ${t_goal[-1]} s; by hand" \
         "${t_manual[-1]} s; encroot migrate initial ${t_initial[-1]} s + cutover" \
         "${t_cutover[-1]} s, ${b_encroot[-1]} bytes; in one command ${t_all[-1]} s" >&2
done

count_processes() {  # count_processes SNAPSHOTS: zfs/zpool processes of one migrate
    local snaps=$1 log="$work/calls-$1.log"
    make_source "pc$snaps" "$snaps" 30 >/dev/null
    make_destination "pd$snaps"
    printf '#!/bin/bash\necho zfs >> %s\nexec zfs "$@"\n' "$log" > "$work/zfs-$snaps"
    printf '#!/bin/bash\necho zpool >> %s\nexec zpool "$@"\n' "$log" > "$work/zpool-$snaps"
    chmod +x "$work/zfs-$snaps" "$work/zpool-$snaps"
    ENCROOT_ZFS="$work/zfs-$snaps" ENCROOT_ZPOOL="$work/zpool-$snaps" encroot migrate \
        --key-file "$work/src.key" --new-key-file "$work/dst.key" "pc$snaps" "pd$snaps" \
        > /dev/null
    wc -l < "$log"
    zpool destroy "pd$snaps"; zpool destroy "pc$snaps"
    rm -f "$work/pc$snaps.img" "$work/pd$snaps.img"
}
p3=$(count_processes 3)
p30=$(count_processes 30)

python3 - "$plain_bytes" "${t_plain[*]}" "${t_initial[*]}" "${t_cutover[*]}" \
    "${b_encroot[*]}" "$p3" "$p30" "${t_manual[*]}" "${t_all[*]}" "${t_goal[*]}" \
    <<'PY' | tee "$OUT/bench-migrate.json"
import json, statistics, subprocess, sys
plain_bytes = int(sys.argv[1])
plain = [float(x) for x in sys.argv[2].split()]
initial = [float(x) for x in sys.argv[3].split()]
cutover = [float(x) for x in sys.argv[4].split()]
total = [a + b for a, b in zip(initial, cutover)]
moved = [int(x) for x in sys.argv[5].split()]
manual = [float(x) for x in sys.argv[8].split()]
whole = [float(x) for x in sys.argv[9].split()]
same_stream = [float(x) for x in sys.argv[10].split()]
median = statistics.median
ratios = {name: [round(a / b, 3) for a, b in zip(runs, base)] for name, runs, base in (
    ("initial", initial, plain), ("initial_vs_same_stream", initial, same_stream),
    ("total_vs_by_hand", total, manual),
    ("one_command_vs_by_hand", whole, manual))}
fixed = [round(a - b, 3) for a, b in zip(initial, plain)]
fixed_same = [round(a - b, 3) for a, b in zip(initial, same_stream)]
result = {
    "openzfs": subprocess.run(["zfs", "version"], capture_output=True, text=True).stdout.split(),
    "tree": "encrypted root (passphrase, default pbkdf2iters) + data/projects/2026, home, "
            "ROOT/default; 3 snapshots; DST one file vdev",
    "zfs_send_Rw_estimated_bytes": plain_bytes,
    "encroot_transferred_bytes": moved,
    "bytes_ratio": round(median(moved) / plain_bytes, 4),
    "runs_seconds": {"zfs_send_Rw_receive": plain,
                     "zfs_snapshot_r_then_send_Rw_receive": same_stream,
                     "by_hand_same_steps": manual,
                     "encroot_initial": initial, "encroot_cutover": cutover,
                     "encroot_total": total, "encroot_one_command": whole},
    "median_seconds": {"zfs_send_Rw_receive": median(plain),
                       "zfs_snapshot_r_then_send_Rw_receive": median(same_stream),
                       "by_hand_same_steps": median(manual), "encroot_initial": median(initial),
                       "encroot_cutover": median(cutover), "encroot_total": median(total),
                       "encroot_one_command": median(whole)},
    "wall_ratio_initial": round(median(initial) / median(plain), 3),
    "wall_ratio_initial_vs_same_stream": round(median(initial) / median(same_stream), 3),
    "wall_ratio_total": round(median(total) / median(plain), 3),
    "wall_ratio_total_vs_by_hand": round(median(total) / median(manual), 3),
    "wall_ratio_one_command": round(median(whole) / median(plain), 3),
    "wall_ratio_one_command_vs_by_hand": round(median(whole) / median(manual), 3),
    **{f"per_round_ratio_{name}": found for name, found in ratios.items()},
    "median_of_round_ratios": {name: round(median(found), 3) for name, found in ratios.items()},
    # the initial phase's fixed cost: its seconds minus the bare pipe's (the same stream's)
    # round by round, and their median
    "fixed_cost_seconds_initial_per_round": fixed,
    "fixed_cost_seconds_initial_vs_same_stream_per_round": fixed_same,
    "fixed_cost_median_of_rounds_seconds": {"initial": round(median(fixed), 3),
                                            "initial_vs_same_stream": round(median(fixed_same), 3)},
    "zfs_processes": {"3_snapshots": int(sys.argv[6]), "30_snapshots": int(sys.argv[7])},
}
print(json.dumps(result, indent=2))
PY
