"""Cutover after the last stream: root properties, marker, re-parenting, moves, checks (pure).

``plan_finish`` lists the steps in their order (docs/design.md, "Cutover
after the streams"); ``snapshot_problems`` and ``encryption_problems`` say
what DST must show after the transfers and after the cold start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..owned import MIGRATE_MARKER, MigrateCutover, Owner, dumps
from ..zfs import Command, ZfsCommands
from .landing import current_copy, migrated_nodes, received_name, received_nodes, staged, top_of
from .model import MigrateRequest, MigrateState, Node
from .steps import MigrateAction, SideCommands, Step

__all__ = ["MOUNT_PROPERTIES", "PREVIEW_ALTROOT", "ROOT_PROPERTIES_KEPT_BACK",
           "cold_start_commands", "encryption_problems", "expected_encryption_root",
           "mark_command", "mount_waves", "plan_finish", "reimport_commands", "reparent_order",
           "root_properties", "snapshot_problems"]

# SRC root's local properties that stay behind: encryption is DST's own, and
# a mount point or share of SRC would collide with SRC's while both are imported.
MOUNT_PROPERTIES = ("mountpoint", "sharenfs", "sharesmb")
# What a plan shows for cold start's altroot: the run makes a fresh one (mkdtemp).
PREVIEW_ALTROOT = "/tmp/encroot-migrate-XXXXXXXX"  # noqa: S108
ROOT_PROPERTIES_KEPT_BACK = frozenset({
    "encryption", "keyformat", "keylocation", "pbkdf2iters", "pbkdf2salt", "encryptionroot",
    *MOUNT_PROPERTIES,
})


def root_properties(request: MigrateRequest, state: MigrateState) -> dict[str, str]:
    """SRC root's local properties that DST's root takes over."""
    return {name: value for name, value in sorted(state.source_root_local.items())
            if name not in ROOT_PROPERTIES_KEPT_BACK and not name.startswith("encroot:")}


def expected_encryption_root(request: MigrateRequest, state: MigrateState,
                             node: Node) -> str:
    """The encryptionroot a migrated dataset must end with."""
    if not node.encrypted:
        return "-"
    if node.encryptionroot != request.source:
        return request.destination_name(node.encryptionroot)
    assert state.destination is not None and state.destination.root_node is not None
    if state.destination.root_node.encrypted:
        return str(request.destination)
    return request.destination_name(top_of(request, node.name))


def reparent_order(request: MigrateRequest, state: MigrateState) -> list[Node]:
    """DST encryption roots that hold SRC root's key, parents first."""
    found = []
    for node in received_nodes(request, state):
        target = current_copy(request, state, node)
        if target is not None and node.encryptionroot == request.source and \
                target.is_encryption_root:
            found.append(target)
    return sorted(found, key=lambda n: (n.name.count("/"), n.name))


def plan_finish(request: MigrateRequest, state: MigrateState, goal: str, *,
                commands: SideCommands | None = None, owner: Owner | None = None
                ) -> list[Step]:
    """Cutover after the last stream: root properties, marker, re-parent, checks.

    ``commands`` builds DST's commands (this host's ``zfs`` by default); ``owner``
    is who the marker names (this process by default).  See ``Step`` for the
    three steps whose commands the run completes.
    """
    assert state.destination is not None and state.destination.root_node is not None
    zfs = (commands or SideCommands()).destination
    dst = str(request.destination)
    steps = [Step(MigrateAction.VERIFY_SNAPSHOTS, dst, f"every SRC snapshot up to @{goal} on DST")]
    roots = reparent_order(request, state)
    # Loading first also proves SRC's key right before anything changes.
    steps += [Step(MigrateAction.LOAD_KEY, target.name, "with SRC root's key",
                   () if target.keystatus == "available" else (zfs.load_key(target.name),))
              for target in roots]
    props = root_properties(request, state)
    pairs = " ".join(f"{k}={v}" for k, v in props.items())
    steps.append(Step(MigrateAction.MARK, dst, (f"with SRC root's local properties {pairs}, in "
                      "one zfs set: " if props else "") + "cutover re-parents now; no raw "
                      "incremental after this",
                      (mark_command(request, goal, (), owner or Owner.current(), zfs,
                                    properties=props),)))
    dst_encrypted = state.destination.root_node.encrypted
    for target in roots:
        parent = target.name.rsplit("/", 1)[0]
        parent_node = state.destination.get(parent)
        if dst_encrypted or (parent_node is not None and parent_node.encrypted):
            steps.append(Step(MigrateAction.INHERIT_KEY, target.name, f"inherit {parent}'s key",
                              (zfs.change_key(target.name, inherit=True),)))
    if staged(state):
        steps += _move_steps(request, state, zfs)
    root = state.destination.root_node
    steps.append(Step(MigrateAction.COLD_START, dst, "export; import under a temporary "
                      "altroot; load only DST's key; check encryption, encryptionroot and "
                      "keystatus; mount every file system",
                      cold_start_commands(request, state, zfs, PREVIEW_ALTROOT, (),
                                          key_given=root.keylocation == "prompt")))
    if request.root_data == "copy":
        steps.append(Step(MigrateAction.COPY_ROOT_DATA, dst, f"files of {request.source}@{goal} "
                          "copied into DST's root, re-encrypted with DST's key"))
    if request.verify_mount:
        steps.append(Step(MigrateAction.VERIFY_FILES, dst,
                          f"SHA-256 of every file in @{goal}, SRC vs DST"))
    steps.append(Step(MigrateAction.REIMPORT, dst, "export; import without mounting or loading "
                      "its key", reimport_commands(request, zfs, ())))
    steps.append(Step(MigrateAction.UNMARK, dst, "", (zfs.inherit(dst, MIGRATE_MARKER),)))
    return steps


def mount_waves(nodes: Sequence[Node]) -> list[list[Node]]:
    """``nodes`` to mount, in waves whose members can mount at the same time.

    A file system waits for every one whose mount point holds its own (or is the
    same one and sorts first), as ``zfs mount -a`` orders them, so a mount is never
    hidden under a later one.  Within a wave, and from wave to wave, the order is
    by mount point, then name.
    """
    ordered = sorted(nodes, key=lambda node: (node.mountpoint, node.name))
    levels: list[int] = []
    for index, node in enumerate(ordered):
        below = [levels[earlier] for earlier in range(index)
                 if _holds(ordered[earlier].mountpoint, node.mountpoint)]
        levels.append(max(below) + 1 if below else 0)
    return [[node for node, level in zip(ordered, levels, strict=True) if level == wave]
            for wave in range(max(levels) + 1 if levels else 0)]


def _holds(outer: str, inner: str) -> bool:
    """Mount point ``outer`` is ``inner`` or one of its parent folders."""
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def mark_command(request: MigrateRequest, goal: str, devices: Sequence[str], owner: Owner,
                 zfs: ZfsCommands, *, properties: Mapping[str, str] | None = None) -> Command:
    """The cutover marker on DST's root: re-parenting began (catch-up refuses from then on);
    ``devices`` are DST's device folders, for ``zpool import -d`` after an interruption.

    ``properties`` (SRC root's local ones, ``root_properties``) go in the same ``zfs
    set``: one process and one transaction group for both.  ZFS sets the generic
    properties of one ``zfs set`` together (``zfs_set_prop_nvlist``); a special one
    that fails (a ``quota`` below what DST uses) fails the command, possibly with the
    marker set: the cutover stops, and run again it goes on (the marker says so)."""
    marker = MigrateCutover(source=str(request.source), snapshot=goal, stage="reparent",
                            devices=tuple(devices), owner=owner)
    return zfs.set(str(request.destination), {**(properties or {}),
                                              MIGRATE_MARKER: dumps(marker)})


def cold_start_commands(request: MigrateRequest, state: MigrateState, zfs: ZfsCommands,
                        altroot: str, devices: Sequence[str], *, key_given: bool
                        ) -> tuple[Command, ...]:
    """Export DST, import it under ``altroot`` unmounted, load its key alone (given on
    stdin, or from its keylocation); with an unencrypted DST root, SRC's key into each
    moved tree instead (``reparent_order``).  The mounts come after a read."""
    dst = str(request.destination)
    assert state.destination is not None and state.destination.root_node is not None
    keys: tuple[Command, ...]
    if state.destination.root_node.encrypted:
        keys = (zfs.load_key(dst) if key_given else zfs.load_key_at_location(dst),)
    else:
        keys = tuple(zfs.load_key(node.name) for node in reparent_order(request, state))
    return (zfs.export_pool(dst),
            zfs.import_pool(dst, search_dirs=devices, no_mount=True, altroot=altroot), *keys)


def reimport_commands(request: MigrateRequest, zfs: ZfsCommands,
                      devices: Sequence[str]) -> tuple[Command, ...]:
    """Export DST and import it normally, without mounting (its mount points are SRC's)."""
    dst = str(request.destination)
    return zfs.export_pool(dst), zfs.import_pool(dst, search_dirs=devices, no_mount=True)


def _move_steps(request: MigrateRequest, state: MigrateState, zfs: ZfsCommands) -> list[Step]:
    """Each child tree out of the staging to its name; then the staging itself (SRC root's
    copy) to DST/NAME with ``--root-data dataset:NAME``, without SRC's mount point and
    shares, or dropped."""
    assert state.destination is not None
    steps = []
    for child in state.source.children(request.source):
        staged_name = request.staged_name(child.name)
        if state.destination.get(staged_name) is not None:
            steps.append(_move(zfs, staged_name, request.destination_name(child.name), "",
                               volume=child.type == "volume"))
    staging = state.destination.get(request.staging)
    if request.root_dataset:
        final = request.destination_name(request.source)
        if staging is not None:
            steps.append(_move(zfs, request.staging, final, " (SRC root's own data)",
                               volume=staging.type == "volume"))
        steps += [Step(MigrateAction.INHERIT, final, f"not SRC root's {name}",
                       (zfs.inherit(final, name),), name)
                  for name in MOUNT_PROPERTIES if name in state.source_root_local]
    elif staging is not None:
        drop = (zfs.destroy_all_snapshots(request.staging),) if staging.snapshots else ()
        steps.append(Step(MigrateAction.DROP_STAGING, request.staging, "SRC root's copy, its "
                          "children moved out; SRC keeps the original, and ZFS refuses while "
                          "a child is left", (*drop, zfs.destroy(request.staging))))
    return steps


def _move(zfs: ZfsCommands, name: str, final: str, why: str, *, volume: bool = False) -> Step:
    """``zfs rename -u`` (nothing is remounted); a volume takes no ``-u``."""
    return Step(MigrateAction.MOVE, name, f"to {final}{why}",
                (zfs.rename(name, final, no_remount=not volume),), final)


def snapshot_problems(request: MigrateRequest, state: MigrateState, goal: str) -> list[str]:
    """SRC snapshots up to ``goal`` missing on DST or with another GUID; partial receives."""
    assert state.destination is not None
    problems = [f"{node.name}: partial receive left (receive_resume_token)"
                for node in state.destination.subtree(request.destination) if node.resumable]
    for node in received_nodes(request, state):
        limit = node.snapshot(goal)
        if limit is None or (node.name == request.source and not request.root_dataset
                             and state.marker is not None):
            continue  # checked before the marker; cutover may have dropped the staging since
        target = current_copy(request, state, node)
        if target is None:
            problems.append(f"{received_name(request, state, node.name)}: missing on DST")
            continue
        guids = {snap.guid for snap in target.snapshots}
        missing = [s.name for s in node.snapshots if s.txg <= limit.txg and s.guid not in guids]
        if missing:
            problems.append(f"{target.name}: missing @{', @'.join(missing[:3])}"
                            + (" ..." if len(missing) > 3 else ""))
    return problems


def encryption_problems(request: MigrateRequest, state: MigrateState, *,
                        keys_loaded: bool) -> list[str]:
    """Migrated datasets whose encryption, root or key status differ from the plan."""
    assert state.destination is not None
    problems = []
    for node in migrated_nodes(request, state):
        target = state.destination.get(request.destination_name(node.name))
        if target is None:
            problems.append(f"{request.destination_name(node.name)}: missing on DST")
            continue
        if node.encryption != target.encryption:
            problems.append(f"{target.name}: encryption {target.encryption}, "
                            f"SRC has {node.encryption}")
            continue
        expected = expected_encryption_root(request, state, node)
        if target.encryptionroot != expected:
            problems.append(f"{target.name}: encryptionroot {target.encryptionroot}, "
                            f"expected {expected}")
        if keys_loaded and node.encryptionroot == request.source and \
                target.keystatus != "available":
            problems.append(f"{target.name}: keystatus {target.keystatus} with DST's key "
                            "loaded")
    return problems
