#!/bin/bash
# Make the sample stream heads in tests/data/streams from real OpenZFS.
# Run in the lab:  encroot lab run --out tests/data/streams tests/data/make-streams.sh
# Each file is the first 64 KiB of a real `zfs send` stream (the header and
# some records after it): enough for the header parser and the peek tests.
set -eu
set +o pipefail  # `zfs send | head -c` ends with SIGPIPE on purpose
work=$(mktemp -d /var/tmp/streams.XXXXXX)
truncate -s 256M "$work/p.img"
zpool create -f -O mountpoint=none p "$work/p.img"
echo -n 'correct horse battery' | zfs create -o encryption=on -o keyformat=passphrase \
    -o keylocation=prompt -o mountpoint=/p/enc p/enc
zfs create p/enc/child
zfs create p/enc/child/grandchild
zfs create -o mountpoint=/p/plain p/plain
echo data > /p/enc/file; echo data > /p/plain/file
zfs snapshot -r p@A
echo more > /p/enc/file2
zfs snapshot -r p@B
zfs clone p/plain@A p/plainclone

head_of() { head -c 65536 > "$OUT/$1"; }
zfs send p/plain@A | head_of plain-full.zstream
zfs send -i @A p/plain@B | head_of plain-incremental.zstream
zfs send -w p/enc@A | head_of raw-full.zstream
zfs send -w -i @A p/enc@B | head_of raw-incremental.zstream
zfs send -w p/enc/child@A | head_of raw-child-full.zstream
zfs send -w -R p/enc@B | head_of raw-replication.zstream
zfs send -w -R -I @A p/enc@B | head_of raw-replication-incremental.zstream
zfs send -R p/plain@B | head_of plain-replication.zstream
zfs snapshot p/plainclone@C
zfs send -i p/plain@A p/plainclone@C | head_of clone-incremental.zstream
zfs get -H -p -o name,value guid -r -t snapshot p > "$OUT/guids.txt"
zfs version > "$OUT/zfs-version.txt"
ls -la "$OUT"
