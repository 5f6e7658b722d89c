#!/bin/bash
# Benchmark: `encroot doctor` on a pool of N datasets against one `zfs get -r -H -p all`
# of the same pool, in the same guest run; also counts the zfs/zpool processes the audit
# starts.  Run in the lab:
#   encroot lab run --out bench-out bench/doctor.sh [N] [ROUNDS]
# N datasets: N/100 encryption roots (hex keys from files), each with 99 inheriting
# children.  Writes $OUT/bench-doctor.json.  Not part of CI (heavy).
set -euo pipefail
n=${1:-2000}
rounds=${2:-3}
work=$(mktemp -d /var/tmp/bench.XXXXXX)
truncate -s 2G "$work/pool.img"
zpool create -f -O mountpoint=none -O canmount=off bpool "$work/pool.img"
roots=$(( n / 100 ))
echo "creating $n datasets" >&2
for r in $(seq "$roots"); do
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/k$r"
    zfs create -o encryption=on -o keyformat=hex -o "keylocation=file://$work/k$r" \
        -o canmount=off "bpool/r$r"
done
for r in $(seq "$roots"); do for c in $(seq 99); do echo "bpool/r$r/c$c"; done; done |
    xargs -P 8 -n 20 sh -c 'for d; do zfs create -o canmount=off "$d"; done' sh
count=$(zfs list -H -o name -r bpool | wc -l)
echo "$count datasets" >&2

seconds() { echo "$EPOCHREALTIME"; }  # bash's clock: no process in the interval
timed() { local s e; s=$(seconds); "$@" > /dev/null; e=$(seconds); python3 -c "print(f'{$e - $s:.3f}')"; }
encroot --version > /dev/null  # bytecode compiled before anything is timed
api_audit() {
    python3 -c '
import time
from encroot.doctor import audit, read_audit_state
from encroot.zfs import Zfs
start = time.monotonic()
findings = audit(read_audit_state(Zfs(), ["bpool"]))
print(f"{time.monotonic() - start:.3f}")'
}
declare -a t_get t_cli t_api
for round in $(seq "$rounds"); do
    t_get+=("$(timed zfs get -r -H -p all bpool)")
    t_cli+=("$(timed encroot doctor --json bpool || true)")
    t_api+=("$(api_audit)")
    echo "round $round: zfs get all ${t_get[-1]} s, encroot doctor ${t_cli[-1]} s," \
         "audit in-process ${t_api[-1]} s" >&2
done

# Count the processes the audit starts, through counting wrappers.
for tool in zfs zpool; do
    real=$(command -v "$tool")
    printf '#!/bin/sh\necho %s >> %s/calls\nexec %s "$@"\n' "$tool" "$work" "$real" \
        > "$work/$tool"; chmod +x "$work/$tool"
done
ENCROOT_ZFS=$work/zfs ENCROOT_ZPOOL=$work/zpool encroot doctor --json bpool > "$work/doctor.json" || true
processes=$(wc -l < "$work/calls")
findings=$(python3 -c "import json; print(len(json.load(open('$work/doctor.json'))['findings']))")

python3 - "$count" "$processes" "$findings" "${t_get[*]}" "${t_cli[*]}" "${t_api[*]}" <<'PY' | tee "$OUT/bench-doctor.json"
import json, statistics, subprocess, sys
count, processes, findings = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
runs = {name: [float(x) for x in sys.argv[i].split()] for i, name in
        ((4, "zfs_get_all"), (5, "encroot_doctor_cli"), (6, "audit_in_process"))}
median = {name: statistics.median(times) for name, times in runs.items()}
print(json.dumps({
    "openzfs": subprocess.run(["zfs", "version"], capture_output=True, text=True).stdout.split(),
    "datasets": count, "audit_processes": processes, "findings": findings,
    "runs_seconds": runs, "median_seconds": median,
    "ratio_vs_zfs_get_all": {k: round(v / median["zfs_get_all"], 3) for k, v in median.items()},
}, indent=2))
PY
