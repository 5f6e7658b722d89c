#!/bin/bash
# Two guests, real OpenSSH between them: guest a sends an encrypted pool's datasets raw
# (zfs send -Rw) through `ssh peer zfs receive` to guest b, and b checks what arrived.
# Run by `./dev lab-pair` as `encroot lab pair --zfs-a V --zfs-b W tests/pair/smoke.sh`
# (one script for both guests; LAB_ROLE says which). docs/lab.md, "Two guests".
#
# Guest a: pool `src`, encrypted at its root (passphrase), with src/x and src/x/y under
# it and two recursive snapshots. Guest b: pool `dst`, unencrypted. The stream of
# src/x@s2 becomes dst/x, its own encryption root, with the key not loaded (raw).
# b compares every snapshot's GUID with a's, checks keystatus and encryptionroot, then
# loads the passphrase and compares the files' checksums.
set -euo pipefail
PASS="correct horse battery staple"
say() { echo "smoke: $*"; }

say "guest $LAB_ROLE: $(zfs version | head -1), $LAB_IFACE $LAB_SELF_ADDR, peer $LAB_PEER_ADDR"
[ "$(ls /sys/class/net | sort | tr '\n' ' ')" = "$LAB_IFACE lo " ]
lab-ssh-setup
say "ssh peer: $(ssh peer 'zfs version | head -1')"

disk=/var/tmp/pool.img
truncate -s 512M "$disk"
case $LAB_ROLE in
a)
    printf %s "$PASS" | zpool create -O encryption=on -O keyformat=passphrase \
        -O keylocation=prompt -O mountpoint=/src src "$disk"
    zfs create src/x
    zfs create src/x/y
    head -c 3M /dev/urandom > /src/x/one
    seq 1 100000 > /src/x/y/two
    zfs snapshot -r src/x@s1
    head -c 1M /dev/urandom >> /src/x/one
    zfs snapshot -r src/x@s2
    # a received file system gets a GUID of its own; its snapshots keep theirs
    zfs list -H -p -r -t snapshot -o name,guid src/x | sed 's|^src/|dst/|' \
        > "$LAB_TO_PEER/guids.txt"
    (cd /src/x && sha256sum one y/two) > "$LAB_TO_PEER/sums.txt"
    cp "$LAB_TO_PEER"/*.txt "$OUT/"
    lab-barrier pools
    say "zfs send -Rw src/x@s2 | ssh peer zfs receive -u dst/x"
    set +e
    zfs send -Rw src/x@s2 | ssh peer zfs receive -u dst/x 2> "$OUT/receive.err"
    status=("${PIPESTATUS[@]}")
    set -e
    cat "$OUT/receive.err" >&2
    echo "${status[*]}" > "$LAB_TO_PEER/send-status.txt"
    cp "$OUT/receive.err" "$LAB_TO_PEER/receive.err"
    say "send/receive status: ${status[*]}"
    lab-barrier sent
    [ "${status[*]}" = "0 0" ]
    ;;
b)
    zpool create -O mountpoint=/dst dst "$disk"
    lab-barrier pools
    lab-barrier sent
    [ "$(cat "$LAB_FROM_PEER/send-status.txt")" = "0 0" ] || {
        say "the send failed on a's side: $(cat "$LAB_FROM_PEER/send-status.txt")"; exit 1; }
    zfs list -H -p -r -t snapshot -o name,guid dst/x > "$OUT/guids.txt"
    diff -u "$LAB_FROM_PEER/guids.txt" "$OUT/guids.txt"
    say "snapshot GUIDs equal: $(wc -l < "$OUT/guids.txt") snapshots"
    zfs get -H -r -t filesystem -o name,property,value encryptionroot,keystatus,encryption dst/x \
        | tee "$OUT/encryption.txt"
    for fs in dst/x dst/x/y; do
        [ "$(zfs get -H -o value keystatus "$fs")" = unavailable ]
        [ "$(zfs get -H -o value encryptionroot "$fs")" = dst/x ]
    done
    printf %s "$PASS" | zfs load-key -L prompt dst/x
    zfs mount -a
    (cd /dst/x && sha256sum -c "$LAB_FROM_PEER/sums.txt")
    say "keys load with a's passphrase; contents equal"
    ;;
esac
say "guest $LAB_ROLE done"
