#!/bin/bash
# Where the lab's CPU goes: the ZFS tests (or the pytest arguments given) in two workers,
# as `./dev test` runs them, under BSD process accounting. Prints and writes
# $OUT/profile.txt: CPU seconds by command, and the zfs/zpool processes of each test
# module by who started them (the test, or encroot). See bench/lab_profile.py.
# Run in the lab (alone on the machine):
#   encroot lab run --zfs 2.3 --timeout 4800 --out prof-out bench/lab-profile.sh [PYTEST ARGS]
# Not part of CI.
set -u
[ $# -gt 0 ] || set -- tests/zfs
python3 bench/lab_profile.py start /var/tmp/pacct
python3 bench/lab_profile.py watch /var/tmp/workers.txt &
watcher=$!
python3 -m encroot.lab.parallel --workers 2 --out "$OUT" --weights tests/zfs/module-seconds.txt \
    -- -m zfs "$@"
status=$?
kill "$watcher"
python3 bench/lab_profile.py report /var/tmp/pacct /var/tmp/workers.txt | tee "$OUT/profile.txt"
exit "$status"
