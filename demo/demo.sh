#!/bin/bash
# encroot's demonstration, run inside the lab guest by `./dev demo`
# (`encroot lab run demo/demo.sh`).  It grows as features land.
set -euo pipefail
echo "== OpenZFS in this guest"
zfs version
encroot --version

work=$(mktemp -d /var/tmp/demo.XXXXXX)
truncate -s 256M "$work/src.img" "$work/dst.img"
zpool create -f -O mountpoint=/src src "$work/src.img"
zpool create -f -O mountpoint=/dst dst "$work/dst.img"

echo "== encrypted datasets made through encroot's command layer (keys on stdin only)"
python3 - <<'PY'
from encroot import Key, Zfs

zfs = Zfs(log=lambda line: print("  +", line))
with Key.passphrase("correct horse battery") as key:
    zfs.create("src/fs", {"com.example:owner": "demo"}, key=key)
with Key.hex("5a" * 32) as key:
    zfs.create("src/hexroot", key=key)
with Key.raw(bytes(range(32))) as key:
    zfs.create("src/rawroot", key=key)
table = zfs.get(["src"], ["encryption", "encryptionroot", "keyformat", "keystatus"],
                recursive=True)
for name in table:
    row = table[name]
    print(f"  {name:14} {row['encryption'].value:12} root={row['encryptionroot'].value:12} "
          f"format={row['keyformat'].value:10} key={row['keystatus'].value}")
PY
echo ok > /src/fs/file
zfs snapshot src/fs@A

echo "== the OpenZFS issue 17724 repro: dst/fs exists and is unencrypted"
zfs create dst/fs
echo "old data" > /dst/fs/old
echo "-- stock zfs receive -F:"
if zfs send -w src/fs@A | zfs receive -F -u dst/fs; then
    echo "unexpected: stock zfs accepted it"; exit 1
fi
echo "-- encroot stream inspect:"
zfs send -w src/fs@A | encroot stream inspect -
echo "-- encroot receive -n (the plan, nothing changes):"
zfs send -w src/fs@A | encroot receive -F -u -n --allow-encryption-change dst/fs
echo "-- encroot receive -F -u --allow-encryption-change dst/fs:"
zfs send -w src/fs@A | encroot receive -F -u --allow-encryption-change dst/fs
echo "-- load the source's key, mount, compare:"
echo -n "correct horse battery" | zfs load-key -L prompt dst/fs
zfs mount dst/fs
cmp /src/fs/file /dst/fs/file && echo "  file contents equal: $(cat /dst/fs/file)"
echo "  snapshot GUIDs: src $(zfs get -H -o value guid src/fs@A), dst $(zfs get -H -o value guid dst/fs@A)"
zfs list -r -o name,encryption,encryptionroot,keystatus,mounted dst

echo "== history of src holds no key material:"
if zpool history -il src | grep -q -e 'correct horse' -e 5a5a5a5a; then
    echo "KEY FOUND IN HISTORY"; exit 1
fi
echo "  none found"
zpool export src; zpool export dst

echo "== encroot migrate: an encrypted pool root with its children, raw, onto a mirror pool"
echo -n "old root passphrase" > "$work/old.key"; echo -n "new root passphrase" > "$work/new.key"
truncate -s 256M "$work/old.img" "$work/new-a.img" "$work/new-b.img"
zpool create -f -O encryption=on -O keyformat=passphrase -O keylocation=prompt \
    -O pbkdf2iters=100000 -O compression=lz4 -O mountpoint=/old old "$work/old.img" < "$work/old.key"
zpool create -f -O encryption=on -O keyformat=passphrase -O keylocation=prompt \
    -O pbkdf2iters=100000 -O mountpoint=/new new mirror "$work/new-a.img" "$work/new-b.img" \
    < "$work/new.key"
zfs create -p old/home/alice; zfs create -o canmount=off -o mountpoint=none old/ROOT
zfs create -o canmount=noauto -o mountpoint=/old-be old/ROOT/default
echo "alice's notes" > /old/home/alice/notes; zfs snapshot -r old@monday
echo "-- stock OpenZFS cannot: new's root exists, and a child received alone gets its own key"
echo "-- encroot migrate -n (the plan):"
encroot migrate -n old new
echo "-- encroot migrate --verify=mount (initial copy, then cutover):"
encroot migrate --verify=mount --key-file "$work/old.key" --new-key-file "$work/new.key" old new
encroot status new
zpool export old; zpool export new
echo "demo finished: $(head -1 <(zfs version))" | tee "$OUT/demo.txt"
