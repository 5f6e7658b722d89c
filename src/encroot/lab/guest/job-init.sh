#!/bin/bash
# Run-time init of an encroot lab guest (PID 1, started by the image's stub).
# Contract with the host (encroot/lab/vm.py):
#   /lab/job/script        the user's script, run with bash as root
#   /lab/job/args          its arguments, NUL-separated
#   /lab/job/env           KEY=VALUE lines exported to the script (ENCROOT_SRC_REL, ...)
#   /lab/job/stdout|stderr the script's output, which the host streams as it grows
#   /lab/job/out/          $OUT: what the script writes here is copied back to the host
#   /lab/job/zfs-version   the output of `zfs version` in this guest
#   /lab/job/rc            the script's exit status
#   /lab/job/setup-failed  written instead of rc when the guest itself could not set up
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb

power_off() {
    sync
    echo o > /proc/sysrq-trigger
    sleep 30
}

setup_failed() {
    echo "$*" > /lab/job/setup-failed
    echo "encroot-lab: $*" > /dev/console
    power_off
}

mkdir -p /dev/pts /dev/shm /run /tmp /lab/src
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs -o size=1g tmpfs /tmp
hostname encroot-lab

mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro src /lab/src \
    || setup_failed "cannot mount the source share"
while IFS= read -r line; do
    [ -n "$line" ] && export "$line"
done < /lab/job/env

modprobe zfs || setup_failed "modprobe zfs failed"
zfs version > /lab/job/zfs-version 2>&1 || setup_failed "zfs version failed"

# This checkout's encroot, importable and on PATH without installing anything.
# The checkout is read-only, so bytecode goes to a folder the host keeps beside the
# image (shared as "pycache"): with a prefix, Python ignores every __pycache__, the
# image's own included, so a fresh folder per boot would recompile the standard
# library, pytest and encroot at every boot. Without the share, a scratch folder.
mkdir -p /var/cache/encroot-pycache
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 pycache /var/cache/encroot-pycache \
    || echo "encroot-lab: no pycache share; bytecode is compiled afresh" > /dev/console
export PYTHONPATH="/lab/src/${ENCROOT_SRC_REL}" PYTHONPYCACHEPREFIX=/var/cache/encroot-pycache
cat > /usr/local/bin/encroot <<'WRAP'
#!/bin/sh
exec python3 -c 'import sys; from encroot.cli import main; sys.exit(main())' "$@"
WRAP
chmod +x /usr/local/bin/encroot

export OUT=/lab/job/out ENCROOT_LAB=1
mkdir -p "$OUT"
cd /lab/src

if [ "${ENCROOT_LAB_SHELL:-}" = 1 ]; then
    echo "encroot lab shell: $(head -1 /lab/job/zfs-version); exit to power off" > /dev/console
    setsid -c /bin/bash -l < /dev/ttyS0 > /dev/ttyS0 2>&1
    echo 0 > /lab/job/rc
    power_off
fi

mapfile -d '' args < /lab/job/args
/bin/bash /lab/job/script "${args[@]}" > /lab/job/stdout 2> /lab/job/stderr < /dev/null
echo $? > /lab/job/rc
power_off
