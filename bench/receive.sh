#!/bin/bash
# Benchmark: `zfs send -w | encroot receive` against `zfs send -w | zfs receive`
# of the same raw stream, in the same guest run.  Run in the lab:
#   encroot lab run --out bench-out bench/receive.sh [SIZE_MIB] [ROUNDS]
# Prints a table and writes $OUT/bench-receive.json.  Not part of CI (heavy).
set -euo pipefail
size_mib=${1:-1024}
rounds=${2:-3}
work=$(mktemp -d /var/tmp/bench.XXXXXX)
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

seconds() { python3 -c 'import sys,time; print(time.monotonic())'; }
timed() {  # timed LABEL COMMAND... -> prints elapsed seconds
    local start end
    start=$(seconds); "$@"; end=$(seconds)
    python3 -c "print(f'{$end - $start:.3f}')"
}
plain() { zfs send -w bsrc/fs@A | zfs receive -u bdst/plain; }
create() {
    zfs send -w bsrc/fs@A | encroot receive -F -u --allow-encryption-change bdst/new > /dev/null
}
replace() {
    zfs send -w bsrc/fs@A | encroot receive -F -u --allow-encryption-change bdst/old > /dev/null
}

declare -a t_plain t_create t_replace
for round in $(seq "$rounds"); do
    t_plain+=("$(timed plain)"); zfs destroy -r bdst/plain
    t_create+=("$(timed create)"); zfs destroy -r bdst/new
    zfs create bdst/old; echo old > /bdst/old/file; zfs unmount bdst/old
    t_replace+=("$(timed replace)"); zfs destroy -r bdst/old
    echo "round $round: plain ${t_plain[-1]} s, create ${t_create[-1]} s, replace ${t_replace[-1]} s" >&2
done
peek_ms=$(zfs send -w bsrc/fs@A | python3 -c '
import sys, time
from encroot.stream import peek_stream
start = time.perf_counter()
peeked = peek_stream(sys.stdin.fileno())
print(f"{(time.perf_counter() - start) * 1000:.2f}")
' 2>/dev/null || true)

python3 - "$stream_bytes" "$peek_ms" "${t_plain[*]}" "${t_create[*]}" "${t_replace[*]}" <<'PY' | tee "$OUT/bench-receive.json"
import json, statistics, subprocess, sys
stream_bytes, peek_ms = int(sys.argv[1]), float(sys.argv[2] or "nan")
runs = {name: [float(x) for x in sys.argv[i].split()] for i, name in
        ((3, "zfs_receive"), (4, "encroot_receive_new_target"), (5, "encroot_receive_replace"))}
median = {name: statistics.median(times) for name, times in runs.items()}
base = median["zfs_receive"]
result = {
    "openzfs": subprocess.run(["zfs", "version"], capture_output=True, text=True).stdout.split(),
    "stream_bytes": stream_bytes,
    "runs_seconds": runs,
    "median_seconds": median,
    "throughput_MBps": {k: round(stream_bytes / v / 1e6, 1) for k, v in median.items()},
    "throughput_ratio_vs_zfs_receive": {k: round(base / v, 3) for k, v in median.items()},
    "header_peek_ms": peek_ms,
}
print(json.dumps(result, indent=2))
PY
