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

# This checkout's encroot, importable and on PATH without installing anything. The
# package is copied to the guest's own disk once per boot: imported from the 9p share,
# every start of encroot paid for dozens of slow remote stats and reads (measured under
# TCG: `encroot --version` 4.8 s from the share, 2.2 s from a local copy), and its
# bytecode could not be written beside the read-only sources. The standard library and
# pytest use the image's own bytecode, so no PYTHONPYCACHEPREFIX is set.
ENCROOT_PACKAGE="/lab/src/${ENCROOT_SRC_REL}/encroot"
mkdir -p /opt/encroot-src
tar -C "$(dirname "$ENCROOT_PACKAGE")" --exclude=__pycache__ -cf - encroot \
    | tar -C /opt/encroot-src -xf - || setup_failed "cannot copy $ENCROOT_PACKAGE"
export PYTHONPATH=/opt/encroot-src
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
