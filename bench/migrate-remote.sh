#!/bin/bash
# Benchmark: `encroot migrate --phase initial` to a pool on another host over SSH, against
# `zfs send -Rw | ssh HOST zfs receive` of the same tree, baseline and encroot interleaved
# round by round in the same guest run (issue 16's performance goal).  The "other host" is
# a private sshd on the guest's loopback (real OpenSSH, keys generated here, strict
# host-key checking), so both sides pay the same encryption and the same copies.
# Per round it records the wall time, the bytes on the wire (the loopback interface's
# transmitted bytes: both directions of the ssh connections, nothing else uses it here)
# and the ssh connections sshd accepted; then encroot's fixed cost (a 1 MiB tree) and the
# connections of a migration of a tree with 3 and with 30 snapshots (they must not grow).
# Run in the lab:
#   encroot lab run --out bench-out bench/migrate-remote.sh [SIZE_MIB] [ROUNDS]
# Writes $OUT/bench-migrate-remote.json.  Not part of CI (heavy).
set -euo pipefail
size_mib=${1:-1024}
rounds=${2:-5}
work=$(mktemp -d /var/tmp/bench.XXXXXX)
pool_mib=$(( size_mib * 13 / 10 + 256 ))
echo -n 'correct horse battery' > "$work/src.key"
echo -n 'another pass phrase' > "$work/dst.key"
seconds() { echo "$EPOCHREALTIME"; }  # bash's clock: no process in the interval
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }
wire() { cat /sys/class/net/lo/statistics/tx_bytes; }
accepted() { grep -c 'Accepted publickey' "$work/sshd.log" || true; }

# -- a private sshd on 127.0.0.1, as tests/zfs/test_remote.py sets it up
ip link set lo up; mkdir -p /run/sshd && chmod 0755 /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/user_key"
cp "$work/user_key.pub" "$work/authorized_keys"
port=2222
cat > "$work/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_key
PidFile $work/sshd.pid
PermitRootLogin prohibit-password
AuthorizedKeysFile $work/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
MaxSessions 50
EOF
/usr/sbin/sshd -f "$work/sshd_config" -E "$work/sshd.log"
echo "[127.0.0.1]:$port $(cat "$work/host_key.pub")" > "$work/known_hosts"
cat > "$work/ssh_config" <<EOF
Host lab
  HostName 127.0.0.1
  Port $port
  User root
  IdentityFile $work/user_key
  IdentitiesOnly yes
  UserKnownHostsFile $work/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
EOF
trap 'kill "$(cat "$work/sshd.pid")" 2>/dev/null; for p in $(zpool list -H -o name); do
    case $p in b*|pc*|pd*) zpool destroy -f "$p";; esac; done; rm -rf "$work"' EXIT
ssh_options=(--ssh-option -F --ssh-option "$work/ssh_config")

make_source() {  # make_source POOL SNAPSHOTS MIB: an encrypted root with three child trees
    local pool=$1 snaps=$2 mib=$3 per i
    truncate -s "${pool_mib}M" "$work/$pool.img"
    zpool create -f -O encryption=on -O keyformat=passphrase -O keylocation=prompt \
        -O compression=off -O mountpoint="/$pool" "$pool" "$work/$pool.img" < "$work/src.key"
    zfs create -p "$pool/data/projects/2026"; zfs create "$pool/home"
    per=$(( mib / snaps / 3 + 1 ))
    for i in $(seq "$snaps"); do
        head -c "$((per << 20))" /dev/urandom > "/$pool/data/projects/2026/f$i"
        head -c "$((per << 20))" /dev/urandom > "/$pool/home/f$i"
        head -c "$((per << 20))" /dev/urandom > "/$pool/data/f$i"
        zfs snapshot -r "$pool@s$i"
    done
}
make_destination() {  # the "remote" pool, encrypted with its own passphrase
    truncate -s "${pool_mib}M" "$work/$1.img"
    zpool create -f -O encryption=on -O keyformat=passphrase -O keylocation=prompt \
        -O mountpoint="/$1" "$1" "$work/$1.img" < "$work/dst.key"
}
drop() { zpool destroy "$1"; rm -f "$work/$1.img"; }
drop_encroot_snapshots() {  # SOURCE: encroot's migration snapshots, so each round is alike
    local snap
    for snap in $(zfs list -H -o name -t snapshot -d 1 "$1" | grep @encroot-migrate- || true)
    do zfs destroy -r "$snap"; done
}

declare -a t_pipe t_encroot w_pipe w_encroot c_pipe c_encroot
measure() {  # measure NAME COMMAND...: seconds, wire bytes, accepted connections
    local start end bytes conns
    bytes=$(wire); conns=$(accepted); start=$(seconds)
    "${@:2}" || { echo "bench: $1 failed" >&2; return 1; }
    end=$(seconds)
    sleep 1  # sshd logs the accept asynchronously
    printf '%s %s %s\n' "$(elapsed "$start" "$end")" "$(( $(wire) - bytes ))" \
        "$(( $(accepted) - conns ))"
}
pipe_round() {
    zfs send -Rw bsrc@s3 | ssh -F "$work/ssh_config" lab zfs receive -u bpipe/copy
}
encroot_round() {
    encroot migrate --phase initial "${ssh_options[@]}" bsrc lab:bdst > /dev/null
}

echo "writing ${size_mib} MiB of random data in 3 snapshots" >&2
make_source bsrc 3 "$size_mib"
stream_bytes=$(zfs send -Rw -nP bsrc@s3 | awk '/^size/ {print $2}')
for round in $(seq "$rounds"); do
    make_destination bpipe
    read -r t w c < <(measure pipe pipe_round) && [ -n "${t:-}" ] || exit 1
    t_pipe+=("$t"); w_pipe+=("$w"); c_pipe+=("$c")
    drop bpipe
    make_destination bdst
    read -r t w c < <(measure encroot encroot_round) && [ -n "${t:-}" ] || exit 1
    t_encroot+=("$t"); w_encroot+=("$w"); c_encroot+=("$c")
    drop bdst; drop_encroot_snapshots bsrc
    echo "round $round: zfs send -Rw | ssh zfs receive ${t_pipe[-1]} s, ${w_pipe[-1]} B" \
         "on the wire, ${c_pipe[-1]} connection(s); encroot migrate --phase initial" \
         "${t_encroot[-1]} s, ${w_encroot[-1]} B, ${c_encroot[-1]} connection(s)" >&2
done
drop bsrc

fixed() {  # encroot's fixed cost: a 1 MiB tree, pipe and encroot, 3 rounds (medians)
    local round t w c
    make_source bsrc 3 1 > /dev/null
    for round in 1 2 3; do
        make_destination bpipe; read -r t w c < <(measure pipe pipe_round); drop bpipe
        echo "pipe $t"
        make_destination bdst; read -r t w c < <(measure encroot encroot_round); drop bdst
        drop_encroot_snapshots bsrc
        echo "encroot $t"
    done
    drop bsrc
}
fixed_lines=$(fixed)

connections() {  # connections SNAPSHOTS: ssh connections of one whole migration
    local snaps=$1 before
    make_source "pc$snaps" "$snaps" 30 > /dev/null
    make_destination "pd$snaps"
    before=$(accepted)
    encroot migrate --key-file "$work/src.key" --new-key-file "$work/dst.key" \
        "${ssh_options[@]}" "pc$snaps" "lab:pd$snaps" > /dev/null
    sleep 1
    echo $(( $(accepted) - before ))
    drop "pd$snaps"; drop "pc$snaps"
}
c3=$(connections 3)
c30=$(connections 30)

python3 - "$stream_bytes" "${t_pipe[*]}" "${t_encroot[*]}" "${w_pipe[*]}" "${w_encroot[*]}" \
    "${c_pipe[*]}" "${c_encroot[*]}" "$c3" "$c30" "$fixed_lines" \
    <<'PY' | tee "$OUT/bench-migrate-remote.json"
import json, statistics, subprocess, sys
(stream, t_pipe, t_enc, w_pipe, w_enc, c_pipe, c_enc, c3, c30, fixed) = sys.argv[1:11]
floats = lambda s: [float(x) for x in s.split()]
ints = lambda s: [int(x) for x in s.split()]
t_pipe, t_enc, w_pipe, w_enc = floats(t_pipe), floats(t_enc), ints(w_pipe), ints(w_enc)
median = statistics.median
fixed_pipe = median(float(l.split()[1]) for l in fixed.splitlines() if l.startswith("pipe"))
fixed_enc = median(float(l.split()[1]) for l in fixed.splitlines() if l.startswith("encroot"))
print(json.dumps({
    "openzfs": subprocess.run(["zfs", "version"], capture_output=True, text=True).stdout.split(),
    "tree": "encrypted root (passphrase) + data/projects/2026, home; 3 snapshots; "
            "destination through sshd on 127.0.0.1",
    "stream_bytes_estimated": int(stream),
    "runs_seconds": {"pipe": t_pipe, "encroot_initial": t_enc},
    "median_seconds": {"pipe": median(t_pipe), "encroot_initial": median(t_enc)},
    "wall_ratio_median": round(median(t_enc) / median(t_pipe), 3),
    "wall_ratio_per_round": [round(e / p, 3) for e, p in zip(t_enc, t_pipe)],
    "wire_bytes": {"pipe": w_pipe, "encroot_initial": w_enc},
    "wire_ratio_median": round(median(w_enc) / median(w_pipe), 4),
    "connections_per_round": {"pipe": ints(c_pipe), "encroot_initial": ints(c_enc)},
    "connections_whole_migration": {"3_snapshots": int(c3), "30_snapshots": int(c30)},
    "fixed_cost_1MiB_median_seconds": {"pipe": fixed_pipe, "encroot_initial": fixed_enc,
                                       "difference": round(fixed_enc - fixed_pipe, 3)},
}, indent=1))
PY
