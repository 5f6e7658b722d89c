#!/bin/bash
# `encroot migrate tank peer:newtank` (push) between two guests of different OpenZFS
# versions (`encroot lab pair --zfs-a V --zfs-b W tests/pair/migrate-across-versions.sh`;
# one script, LAB_ROLE says which guest). Guest a holds `tank`, an encrypted pool root,
# and runs encroot; guest b holds `newtank`, encrypted with its own passphrase, and is
# reached only as `peer` through real OpenSSH (lab-ssh-setup: strict host-key checking,
# keys made per run). The phases run one by one with writes between; the initial phase's
# stream is interrupted once (its ssh is killed with SIGKILL after CUT bytes, through an
# `ssh` put first on PATH) and run again, which must continue from b's resume token.
# After cutover a re-run of catch-up must be refused (OpenZFS 12614), and b checks on its
# own: the GUID of every moved snapshot, encryption roots, a cold start with
# only newtank's passphrase, file checksums, no passphrase in either pool's history.
set -euo pipefail
PASS="correct horse battery"
NEWPASS="a different passphrase"
CUT=${CUT:-120000}
say() { echo "migrate[$LAB_ROLE]: $*"; }
fail() { echo "migrate[$LAB_ROLE]: FAILED: $*" >&2; exit 1; }

say "$(zfs version | head -1); peer $LAB_PEER_ADDR"
lab-ssh-setup
mkdir -p /root/keys /var/tmp/pools
printf %s "$PASS" > /root/keys/tank.key
printf %s "$NEWPASS" > /root/keys/newtank.key
chmod 600 /root/keys/*

history_has_no_key() {  # POOL
    if zpool history -il "$1" | grep -F -e "$PASS" -e "$NEWPASS" >/dev/null; then
        fail "a passphrase is in $1's history"
    fi
}

case $LAB_ROLE in
a)
    truncate -s 1G /var/tmp/pools/tank.img
    printf %s "$PASS" | zpool create -O encryption=on -O keyformat=passphrase \
        -O keylocation=prompt -O pbkdf2iters=100000 -O compression=lz4 tank \
        /var/tmp/pools/tank.img
    od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > /root/keys/h.key
    zfs create -p tank/data/a/b/c
    zfs set user:tag=deep tank/data/a
    zfs create -o encryption=on -o keyformat=hex -o keylocation=file:///root/keys/h.key \
        tank/data/h
    zfs create tank/data/h/x
    zfs create -o encryption=off tank/plain
    zfs create -V 8M tank/vol
    zfs create -o canmount=off -o mountpoint=none tank/ROOT
    zfs create -o canmount=noauto -o mountpoint=/tank-be tank/ROOT/default
    zfs mount tank/ROOT/default
    head -c 8M /dev/urandom > /tank/data/a/a.bin
    echo "deep file" > /tank/data/a/b/c/c.txt
    head -c 1M /dev/urandom > /tank/data/h/x/x.bin
    echo "not encrypted" > /tank/plain/plain.txt
    echo lab > /tank-be/hostname
    echo "in the root itself" > /tank/root-file.txt
    zfs snapshot -r tank@s1
    zfs clone -o canmount=noauto -o mountpoint=/tank-be2 tank/ROOT/default@s1 tank/ROOT/be2
    zfs snapshot -r tank@s2
    zfs get -H -r -t filesystem,volume -s local -o name,property,value all tank \
        > /root/local-before.txt
    lab-barrier pools

    # The initial phase, its stream cut once: the shim passes CUT bytes of the first
    # `zfs receive` stream to the real ssh, keeps its stdin open, kills that ssh (SIGKILL)
    # ten seconds later and then itself.
    mkdir -p /root/shim
    cat > /root/shim/ssh <<SHIM
#!/bin/bash
if [[ "\$*" == *"zfs receive "*"newtank/encroot-migrate"* ]] && mkdir /run/lab-cut 2>/dev/null; then
    { head -c $CUT; exec sleep 600 < /dev/null; } | /usr/bin/ssh "\$@" &
    sleep 10
    pkill -9 -P \$\$
    touch /run/lab-cut/done
    kill -9 \$\$
fi
exec /usr/bin/ssh "\$@"
SHIM
    chmod +x /root/shim/ssh
    say "encroot migrate --phase initial tank peer:newtank, its stream's ssh killed"
    status=0
    PATH=/root/shim:$PATH encroot migrate -v --phase initial tank peer:newtank \
        > "$OUT/initial-cut.out" 2> "$OUT/initial-cut.err" || status=$?
    cat "$OUT/initial-cut.err" >&2
    [ -e /run/lab-cut/done ] || fail "the interruption point was never reached"
    [ "$status" != 0 ] || fail "the initial phase succeeded although its stream was cut"
    tokens=$(ssh peer zfs get -H -o name,value -r receive_resume_token newtank \
        | awk '$2 != "-"' | tee "$OUT/resume-tokens.txt")
    [ -n "$tokens" ] || fail "the cut left no partial receive on b to resume"
    say "cut: encroot exited $status; b holds a resume token for $(cut -f1 <<<"$tokens")"

    encroot migrate -v --phase initial tank peer:newtank | tee "$OUT/initial.out"
    echo "after initial" > /tank/data/a/later.txt
    echo x > /tank/plain/p2
    encroot migrate --phase catch-up --root-data=dataset:rootdata tank peer:newtank \
        | tee "$OUT/catch-up.out"
    echo "after catch-up" > /tank/data/a/b/last.txt
    echo r > /tank/root2
    encroot migrate -v --phase cutover --key-file /root/keys/tank.key \
        --new-key-file /root/keys/newtank.key --root-data=dataset:rootdata \
        tank peer:newtank > "$OUT/cutover.out" 2> "$OUT/cutover.err" \
        || { cat "$OUT/cutover.out" "$OUT/cutover.err"; fail "cutover"; }
    cat "$OUT/cutover.out"
    # --verify=mount needs both pools on one host; b compares the files itself below
    grep -q "cold start" "$OUT/cutover.out" || fail "cutover did not report its cold start"

    status=0
    encroot migrate --phase catch-up --root-data=dataset:rootdata tank peer:newtank \
        > "$OUT/again.out" 2> "$OUT/again.err" || status=$?
    [ "$status" = 1 ] && grep -q 12614 "$OUT/again.err" \
        || fail "a catch-up after cutover was not refused with 12614 (status $status)"
    zfs get -H -r -t filesystem,volume -s local -o name,property,value all tank \
        | diff -u /root/local-before.txt - || fail "the source's properties changed"
    history_has_no_key tank
    for run in "$OUT"/*.out "$OUT"/*.err; do
        if grep -F -e "$PASS" -e "$NEWPASS" "$run" >/dev/null; then
            fail "a passphrase in encroot's output $run"
        fi
    done
    # For b: every snapshot's GUID by name relative to the pool (tank@S became
    # newtank/rootdata@S; received file systems get GUIDs of their own), and the files'
    # checksums.
    zfs list -H -p -r -t snapshot -o name,guid tank | sed -e 's|^tank@|rootdata@|' \
        -e 's|^tank/||' | awk -F'\t' '$1 != "tank"' | sort > "$LAB_TO_PEER/guids.txt"
    for fs in data/a data/a/b/c plain ROOT/default; do
        mp=$(zfs get -H -o value mountpoint "tank/$fs")
        (cd "$mp" && find . -xdev -type f -exec sha256sum {} + | sed "s|  \./|  $fs/|")
    done | sort -k2 > "$LAB_TO_PEER/sums.txt"
    cp "$LAB_TO_PEER"/*.txt "$OUT/"
    lab-barrier migrated
    lab-barrier checked
    ;;
b)
    truncate -s 1G /var/tmp/pools/n1.img /var/tmp/pools/n2.img
    printf %s "$NEWPASS" | zpool create -O encryption=on -O keyformat=passphrase \
        -O keylocation=prompt -O pbkdf2iters=100000 newtank \
        mirror /var/tmp/pools/n1.img /var/tmp/pools/n2.img
    lab-barrier pools
    lab-barrier migrated
    zfs list -H -p -r -t snapshot -o name,guid newtank | sed -e 's|^newtank/||' \
        | awk -F'\t' '$1 != "newtank"' | sort > "$OUT/guids.txt"
    missing=$(comm -23 "$LAB_FROM_PEER/guids.txt" "$OUT/guids.txt")
    [ -z "$missing" ] || fail "snapshots not on b with the same GUID: $missing"
    say "every snapshot of tank is on b with its GUID ($(wc -l < "$OUT/guids.txt"))"
    prop() { zfs get -H -o value "$2" "newtank/$1"; }
    for fs in data data/a data/a/b/c ROOT ROOT/default ROOT/be2 vol rootdata; do
        [ "$(prop "$fs" encryptionroot)" = newtank ] || fail "$fs: encryptionroot $(prop "$fs" encryptionroot)"
    done
    [ "$(prop data/h encryptionroot)" = newtank/data/h ] || fail "data/h is not its own root"
    [ "$(prop data/h/x encryptionroot)" = newtank/data/h ] || fail "data/h/x"
    [ "$(prop data/h keyformat)" = hex ] || fail "data/h keyformat"
    [ "$(prop plain encryption)" = off ] || fail "plain is encrypted"
    [ "$(prop ROOT/be2 origin)" = newtank/ROOT/default@s1 ] || fail "be2's origin"
    [ "$(prop data/a user:tag)" = deep ] || fail "user:tag"
    [ "$(zfs get -H -o value encroot:migrate newtank)" = - ] || fail "encroot:migrate still set"
    if zfs list newtank/encroot-migrate >/dev/null 2>&1; then fail "the staging is left"; fi

    say "cold start: export, import, newtank's passphrase alone"
    zpool export newtank
    zpool import -d /var/tmp/pools -N -R /mnt/check newtank
    printf %s "$NEWPASS" | zfs load-key -L prompt newtank
    for fs in data/a data/a/b/c plain ROOT/default; do zfs mount "newtank/$fs"; done
    [ "$(prop data/h/x keystatus)" = unavailable ] || fail "data/h/x's key is loaded"
    for fs in data/a data/a/b/c plain ROOT/default; do
        mp=$(prop "$fs" mountpoint)  # with the altroot /mnt/check
        (cd "$mp" && find . -xdev -type f -exec sha256sum {} + | sed "s|  \./|  $fs/|")
    done | sort -k2 > "$OUT/sums.txt"
    diff -u "$LAB_FROM_PEER/sums.txt" "$OUT/sums.txt" || fail "files differ"
    history_has_no_key newtank
    say "files equal ($(wc -l < "$OUT/sums.txt")); no passphrase in newtank's history"
    lab-barrier checked
    ;;
esac
say "done"
