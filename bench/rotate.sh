#!/bin/bash
# Benchmark: rotating N encryption roots with 2 user properties each.
#   plain loop      zfs change-key + zfs set, per dataset (what users do today, not crash-safe)
#   change-key only zfs change-key per dataset (the floor: no properties at all)
#   encroot batch   one `encroot change-key --key-dir ... DS1 ... DSN` (journal strategy)
#   encroot API     Dataset(...).change_key(key).property(...).run() per dataset, one process
#   encroot CLI     one `encroot change-key` process per dataset (only with a third argument
#                   "cli": Python's start-up under TCG makes it slow)
# all on the same pool in the same guest run.  Run in the lab:
#   encroot lab run --out bench-out bench/rotate.sh [N] [ROUNDS] [cli]
# Prints progress and writes $OUT/bench-rotate.json.  Not part of CI (heavy).
set -euo pipefail
n=${1:-100}
rounds=${2:-3}
with_cli=${3:-}
work=$(mktemp -d /var/tmp/bench.XXXXXX)
truncate -s 512M "$work/pool.img"
zpool create -f -O mountpoint=none bpool "$work/pool.img"
mkdir -p "$work/keys/a/bpool" "$work/keys/b/bpool"
names=()
for i in $(seq "$n"); do
    name="bpool/r$i"; names+=("$name")
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/keys/a/$name"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/keys/b/$name"
    zfs create -o encryption=on -o keyformat=hex -o keylocation=prompt "$name" \
        < "$work/keys/a/$name"
done
current=a
other() { [ "$current" = a ] && echo b || echo a; }

seconds() { echo "$EPOCHREALTIME"; }  # bash's clock: no process in the interval
timed() {  # timed COMMAND... -> elapsed seconds; the keys flip to the other set
    local start end next
    next=$(other)
    start=$(seconds); "$@" "$next"; end=$(seconds)
    current=$next
    python3 -c "print(f'{$end - $start:.3f}')"
}
plain_loop() {
    for name in "${names[@]}"; do
        zfs change-key "$name" < "$work/keys/$1/$name"
        zfs set bench:epoch="$1$RANDOM" bench:rotated_at="$(date -u +%FT%TZ)" "$name"
    done
}
change_key_only() {
    for name in "${names[@]}"; do zfs change-key "$name" < "$work/keys/$1/$name"; done
}
encroot_batch() {
    encroot change-key --key-dir "$work/keys/$1" -o bench:epoch="$1$RANDOM" \
        -o bench:rotated_at="$(date -u +%FT%TZ)" "${names[@]}" > /dev/null
}
encroot_api() {
    python3 - "$work/keys/$1" "${names[@]}" <<'PY'
import sys, datetime
from encroot import Dataset, Key, Zfs
folder, names = sys.argv[1], sys.argv[2:]
zfs = Zfs()
for name in names:
    with Key.from_file(f"{folder}/{name}", "hex") as key:
        now = datetime.datetime.now(datetime.UTC).isoformat()
        Dataset(name, zfs=zfs).change_key(key).property("bench:epoch", folder[-1]) \
            .property("bench:rotated_at", now).run()
PY
}
encroot_cli() {
    for name in "${names[@]}"; do
        encroot change-key --key-file "$work/keys/$1/$name" -o bench:epoch="$1$RANDOM" \
            -o bench:rotated_at="$(date -u +%FT%TZ)" "$name" > /dev/null
    done
}

declare -A times
methods=(plain_loop change_key_only encroot_batch encroot_api)
[ "$with_cli" = cli ] && methods+=(encroot_cli)
encroot --version > /dev/null  # compile encroot's bytecode before anything is timed
python3 -c 'import asyncio, encroot'
for round in $(seq "$rounds"); do
    line="round $round:"
    for method in "${methods[@]}"; do
        t=$(timed "$method")
        times[$method]="${times[$method]:-} $t"
        line="$line $method ${t}s"
    done
    echo "$line" >&2
done

args=()
for method in "${methods[@]}"; do args+=("$method=${times[$method]}"); done
python3 - "$n" "${args[@]}" <<'PY' | tee "$OUT/bench-rotate.json"
import json, statistics, subprocess, sys
n = int(sys.argv[1])
runs = {}
for arg in sys.argv[2:]:
    name, _, values = arg.partition("=")
    runs[name] = [float(x) for x in values.split()]
median = {name: statistics.median(times) for name, times in runs.items()}
base = median["plain_loop"]
print(json.dumps({
    "openzfs": subprocess.run(["zfs", "version"], capture_output=True, text=True).stdout.split(),
    "datasets": n, "properties_each": 2,
    "runs_seconds": runs, "median_seconds": median,
    "ratio_vs_plain_loop": {k: round(v / base, 3) for k, v in median.items()},
}, indent=2))
PY
