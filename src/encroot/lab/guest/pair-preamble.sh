# Sourced by each guest of a lab pair (encroot/lab/pair.py) before its script, as root.
# From the host's environment: LAB_ROLE (a or b), LAB_SELF_MAC, LAB_SELF_IP and LAB_PEER_IP
# (the link-local addresses both guests derive from their fixed MACs, EUI-64).
# Exports LAB_IFACE, LAB_SELF_ADDR and LAB_PEER_ADDR (with %IFACE), LAB_TO_PEER and
# LAB_FROM_PEER, and puts lab-barrier and lab-ssh-setup on PATH. Any failure here ends the
# job with status 125 and a line that starts with "lab pair:".
pair_setup_failed() {
    echo "lab pair: $*" >&2
    exit 125
}

for helper in lab-barrier lab-ssh-setup; do
    install -m 0755 "/lab/job/$helper" "/usr/local/bin/$helper" \
        || pair_setup_failed "cannot install $helper"
done
mkdir -p /lab/job/barrier /lab/job/to-peer /lab/job/from-peer
export LAB_TO_PEER=/lab/job/to-peer LAB_FROM_PEER=/lab/job/from-peer

# No udev in the guest: load the NIC's driver by hand; the kernel names it.
modprobe virtio_net || pair_setup_failed "modprobe virtio_net failed"
LAB_IFACE=
for _ in $(seq 50); do
    for dev in /sys/class/net/*; do
        if [ "$(cat "$dev/address" 2>/dev/null)" = "$LAB_SELF_MAC" ]; then
            LAB_IFACE=${dev##*/}
        fi
    done
    [ -n "$LAB_IFACE" ] && break
    sleep 0.1
done
[ -n "$LAB_IFACE" ] || pair_setup_failed "no network device with MAC $LAB_SELF_MAC"
others=$(ls /sys/class/net | grep -vxe lo -e "$LAB_IFACE" || true)
[ -z "$others" ] || pair_setup_failed "network devices besides $LAB_IFACE and lo: $others"

ip link set lo up || pair_setup_failed "ip link set lo up failed"
ip link set "$LAB_IFACE" up || pair_setup_failed "ip link set $LAB_IFACE up failed"
# The kernel adds the link-local address and runs duplicate address detection (about a
# second) while it is "tentative"; sockets cannot bind it before that ends.
for _ in $(seq 100); do
    if ip -6 addr show dev "$LAB_IFACE" scope link | grep -q "inet6 $LAB_SELF_IP/64" \
            && [ -z "$(ip -6 addr show dev "$LAB_IFACE" tentative)" ]; then
        break
    fi
    sleep 0.2
done
ip -6 addr show dev "$LAB_IFACE" scope link | grep -q "inet6 $LAB_SELF_IP/64" \
    || pair_setup_failed "$LAB_IFACE has not the expected address $LAB_SELF_IP: $(ip -6 -o addr show dev "$LAB_IFACE")"
[ -z "$(ip -6 addr show dev "$LAB_IFACE" tentative dadfailed)" ] \
    || pair_setup_failed "duplicate address detection did not end on $LAB_IFACE: $(ip -6 -o addr show dev "$LAB_IFACE")"
export LAB_IFACE LAB_SELF_ADDR="$LAB_SELF_IP%$LAB_IFACE" LAB_PEER_ADDR="$LAB_PEER_IP%$LAB_IFACE"
unset dev others
