"""Reading both pools for a migration, and the plans of ``-n`` (reads, then pure plans).

``read_state`` takes two recursive ``zfs get`` calls (SRC and DST, with all
snapshots), one ``zpool list -v`` (DST imported, its features, its devices) and,
for cutover only, one for SRC root's local properties, all at once;
``refresh_destination`` reads DST again (one process; on one host SRC with it,
after the goal snapshot), which is all a running phase reads.  ``estimates`` asks
``zfs send -nP`` once per transfer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from functools import partial

from ..errors import DatasetNotFound, ZfsError
from ..names import in_tree
from ..owned import MIGRATE_MARKER, MIGRATE_SNAPSHOT_PREFIX
from ..records import replace
from ..zfs import SendSpec, Zfs
from ..zfs.parse import PoolListing
from .files import child_entries
from .model import MigrateRequest, MigrateState, Node, Side, Snap
from .plan import assume_synced, phases_to_run, plan_phase, with_goal
from .steps import PhasePlan, SideCommands, Transfer

__all__ = ["POOL_PROPERTIES", "STATE_PROPERTIES", "estimates", "fresh_snapshot_name",
           "plan_migration", "read_root_local", "read_side", "read_sides", "read_state",
           "refresh_destination", "root_files", "side_commands"]

STATE_PROPERTIES = ("type", "guid", "encryption", "encryptionroot", "keystatus", "keyformat",
                    "keylocation", "origin", "canmount", "mountpoint", "mounted", "createtxg",
                    "receive_resume_token", "available", MIGRATE_MARKER)
# DST's pool properties, read with its devices in one zpool list (Zfs.pool_listing).
POOL_PROPERTIES = ("feature@encryption",)


def side_commands(zfs: Zfs, dst: Zfs) -> SideCommands:
    """The builders of SRC's ``zfs`` and DST's (the same one for a local migration)."""
    return SideCommands(zfs.commands, dst.commands)


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def read_side(zfs: Zfs, root: str, *, snapshots: bool = True) -> Side:
    """Every dataset and snapshot under ``root`` in one ``zfs get``; empty if it is absent.

    ``snapshots=False`` reads the datasets alone (each node's ``snapshots`` empty):
    a read of a tree costs about as much per snapshot as per dataset, so checks of
    datasets' own state (keys, mounts) leave them out."""
    return read_sides(zfs, [root], snapshots=snapshots)[0]


def read_sides(zfs: Zfs, roots: Sequence[str], *, snapshots: bool = True) -> list[Side]:
    """Every dataset and snapshot under each of ``roots`` (disjoint trees on ``zfs``'s
    host) in one ``zfs get``; when one is absent, each is read alone (empty if absent)."""
    types = ("filesystem", "volume", "snapshot") if snapshots else ("filesystem", "volume")
    try:
        table = zfs.get(list(roots), STATE_PROPERTIES, recursive=True, types=types,
                        use_json=False)
    except DatasetNotFound:
        if len(roots) == 1:
            return [Side(roots[0], {})]
        return [read_side(zfs, root, snapshots=snapshots) for root in roots]
    values = {name: {p: v.value for p, v in table[name].items()} for name in table}
    return [_side(root, {name: props for name, props in values.items()
                         if in_tree(name, root)})
            for root in roots]


def _side(root: str, values: dict[str, dict[str, str]]) -> Side:
    """The ``Side`` of ``root`` from its datasets' and snapshots' values."""
    snapshots: dict[str, list[Snap]] = {}
    for name, props in values.items():
        if "@" in name:
            dataset, short = name.split("@", 1)
            snapshots.setdefault(dataset, []).append(
                Snap(short, props.get("guid", ""), _int(props.get("createtxg", ""))))
    nodes = {}
    for name, props in values.items():
        if "@" in name:
            continue
        snaps = tuple(sorted(snapshots.get(name, []), key=lambda s: s.txg))
        nodes[name] = Node(
            name, props.get("type", ""), props.get("guid", ""), props.get("encryption", "off"),
            props.get("encryptionroot", "-"), props.get("keystatus", "-"),
            props.get("keyformat", "none"), props.get("keylocation", "none"),
            props.get("origin", "-"),
            props.get("canmount", "-"), props.get("mountpoint", "-"),
            props.get("mounted", "-"), _int(props.get("createtxg", "")),
            props.get("receive_resume_token", "-"), snaps)
    return Side(root, nodes, values.get(root, {}))


def root_files(side: Side, zfs: Zfs | None = None) -> tuple[str, ...] | None:
    """Entries of the root's own file system (not child mount points); None if unmounted.

    On a remote SRC (``zfs`` remote) the folder is listed there (``ls -A``)."""
    root = side.root_node
    if root is None or root.mounted != "yes" or not root.mountpoint.startswith("/"):
        return None
    children = child_entries(side)
    folder = root.mountpoint.rstrip("/") or "/"
    try:
        if zfs is not None and zfs.remote is not None:
            entries = sorted(zfs.list_directory(folder))
        else:
            entries = sorted(os.listdir(folder))
    except (OSError, ZfsError):
        return None
    return tuple(e for e in entries if e not in children)


def read_root_local(zfs: Zfs, source: str) -> dict[str, str]:
    """SRC root's local properties (one ``zfs get -s local all``); empty when SRC is
    absent (the tree read says so)."""
    try:
        table = zfs.get([source], ("all",), sources=("local",), use_json=False)
    except DatasetNotFound:
        return {}
    return {p: v.value for p, v in table[source].items()} if source in table else {}


def read_state(zfs: Zfs, request: MigrateRequest, dst: Zfs | None = None, *,
               root_local: bool | None = None) -> MigrateState:
    """Both sides and the pool facts a plan needs, in three or four processes at once.

    ``zfs`` reads SRC, ``dst`` (default: the same) DST.  ``root_local``: read SRC
    root's local properties (``read_root_local``), which only cutover's steps use
    (``finish.root_properties``); by default when the request runs cutover.  Left
    out, ``source_root_local`` is empty.  The reads run at the same time
    (``Zfs.concurrently``): SRC's tree, SRC root's local properties, DST's pool
    listing and DST's tree (read whether or not the pool is there: a missing pool
    reads as an empty tree)."""
    if root_local is None:
        root_local = "cutover" in request.phases
    dst = zfs if dst is None else dst

    def read_local() -> dict[str, str]:
        return read_root_local(zfs, request.source) if root_local else {}

    def read_destination() -> tuple[PoolListing | None, Side]:
        return dst.concurrently(partial(dst.pool_listing, request.destination, POOL_PROPERTIES),
                                partial(read_side, dst, request.destination))

    source, local, (listing, destination) = zfs.concurrently(
        partial(read_side, zfs, request.source), read_local, read_destination)
    if source.root_node is None:
        local = {}
    files = root_files(source, zfs)
    if listing is None:
        return MigrateState(source, None, {}, 0, local, files)
    return MigrateState(source, destination, dict(listing.properties),
                        _int(destination.root_values.get("available", "")), local, files,
                        *MigrateState.markers(destination.root_values.get(MIGRATE_MARKER)),
                        destination_devices=listing.devices)


def refresh_destination(zfs: Zfs, request: MigrateRequest, state: MigrateState, *,
                        source: bool = False, snapshots: bool = True) -> MigrateState:
    """``state`` with DST read again (one ``zfs get``): what changes while a phase runs.

    With ``source`` (``zfs`` reads both sides: one host), SRC is read in the same
    ``zfs get`` (``read_sides``).  ``snapshots=False`` reads DST's datasets alone
    (the cold start's checks of keys and mounts: a tree's read costs as much per
    snapshot as per dataset); each keeps the snapshots ``state`` had for it."""
    if source:
        source_side, destination = read_sides(zfs, [request.source, request.destination],
                                              snapshots=snapshots)
        state = replace(state, source=source_side)
    else:
        destination = read_side(zfs, request.destination, snapshots=snapshots)
    if not snapshots and state.destination is not None:
        known = state.destination.nodes
        destination = replace(destination, nodes={
            name: replace(node, snapshots=known[name].snapshots) if name in known else node
            for name, node in destination.nodes.items()})
    cutover, phase = MigrateState.markers(destination.root_values.get(MIGRATE_MARKER))
    return replace(state, destination=destination,
                   destination_available=_int(destination.root_values.get("available", "")),
                   marker=cutover, phase_marker=phase)


def fresh_snapshot_name(state: MigrateState, now: float | None = None) -> str:
    """``encroot-migrate-YYYYmmdd-HHMMSS`` (UTC), with a suffix if SRC has it already."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    name = MIGRATE_SNAPSHOT_PREFIX + stamp
    root = state.source.root_node
    taken = {s.name for s in root.snapshots} if root is not None else set()
    suffix = 1
    while name in taken:
        suffix += 1
        name = f"{MIGRATE_SNAPSHOT_PREFIX}{stamp}-{suffix}"
    return name


def estimates(zfs: Zfs, transfers: Sequence[Transfer], state: MigrateState) -> dict[str, int]:
    """``zfs send -nP`` of each transfer, keyed by its command, all at once
    (``Zfs.concurrently``).

    A snapshot not taken yet is stood in for by the dataset's newest one,
    so the estimate leaves out only what was written since.
    """
    found = {}
    asked = []
    for transfer in transfers:
        spec = _existing(transfer.spec, state)
        if spec is None:
            found[transfer.command()] = 0
        else:
            asked.append((transfer.command(), spec))

    def size(spec: SendSpec) -> int | None:
        try:
            return zfs.send_size(spec)
        except ZfsError:
            return None

    sizes = zfs.concurrently(*(partial(size, spec) for _, spec in asked))
    found.update({command: got for (command, _), got in zip(asked, sizes, strict=True)
                  if got is not None})
    return found


def _existing(spec: SendSpec, state: MigrateState) -> SendSpec | None:
    """``spec`` with a snapshot SRC has; None when nothing would be sent yet."""
    if spec.resume_token is not None:
        return spec
    dataset, short = spec.snapshot.split("@", 1)
    node = state.source.get(dataset)
    if node is None or node.snapshot(short) is not None:
        return spec
    if not node.snapshots or f"{dataset}@{node.snapshots[-1].name}" == spec.base:
        return None
    return replace(spec, snapshot=f"{dataset}@{node.snapshots[-1].name}")


def plan_migration(zfs: Zfs, request: MigrateRequest,
                   destination_zfs: Zfs | None = None) -> list[PhasePlan]:
    """The plans of the requested phases, for ``-n``: later phases as if earlier ones ran.

    Estimates come from ``zfs send -nP`` where the snapshots exist; a phase
    that would first take its snapshot is estimated as the incremental from
    the newest snapshot DST has (the writes since then are not known yet).
    """
    dst = zfs if destination_zfs is None else destination_zfs
    state = read_state(zfs, request, dst)
    commands = side_commands(zfs, dst)
    plans = []
    for phase in phases_to_run(request, state):
        plan = plan_phase(request, state, phase, fresh_snapshot_name(state), commands=commands)
        if plan.goal is not None and not plan.refusals:
            sizes = estimates(zfs, plan.transfers, state)
            plan = plan_phase(request, state, phase, fresh_snapshot_name(state), sizes,
                              commands=commands)
        plans.append(plan)
        if plan.refusals or plan.goal is None:
            break
        state = assume_synced(request, with_goal(state, plan.goal.name), plan.goal.name)
    return plans


