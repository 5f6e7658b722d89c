"""Cutover after the last stream: root properties, marker, re-parenting, moves, checks (pure).

``plan_finish`` lists the steps in their order (docs/design.md, "Cutover
after the streams"); ``snapshot_problems`` and ``encryption_problems`` say
what DST must show after the transfers and after the cold start.
"""

from __future__ import annotations

from ..owned import MIGRATE_MARKER
from .landing import current_copy, migrated_nodes, received_name, received_nodes, staged, top_of
from .model import MigrateRequest, MigrateState, Node
from .steps import Step

__all__ = ["MOUNT_PROPERTIES", "ROOT_PROPERTIES_KEPT_BACK", "encryption_problems",
           "expected_encryption_root", "plan_finish", "reparent_order", "root_properties",
           "snapshot_problems"]

# SRC root's local properties that stay behind: encryption is DST's own, and
# a mount point or share of SRC would collide with SRC's while both are imported.
MOUNT_PROPERTIES = ("mountpoint", "sharenfs", "sharesmb")
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


def plan_finish(request: MigrateRequest, state: MigrateState, goal: str) -> list[Step]:
    """Cutover after the last stream: root properties, marker, re-parent, checks."""
    assert state.destination is not None and state.destination.root_node is not None
    dst = str(request.destination)
    steps = [Step("verify-snapshots", dst, f"every SRC snapshot up to @{goal} on DST")]
    roots = reparent_order(request, state)
    # Loading first also proves SRC's key right before anything changes.
    steps += [Step("load-key", target.name, "with SRC root's key",
                   f"zfs load-key -L prompt {target.name} < <SRC key>") for target in roots]
    props = root_properties(request, state)
    if props:
        pairs = " ".join(f"{k}={v}" for k, v in props.items())
        steps.append(Step("set-root-properties", dst, pairs, f"zfs set {pairs} {dst}"))
    steps.append(Step("mark", dst, "cutover re-parents now; no raw incremental after this",
                      f"zfs set {MIGRATE_MARKER}=<json> {dst}"))
    dst_encrypted = state.destination.root_node.encrypted
    for target in roots:
        parent = target.name.rsplit("/", 1)[0]
        parent_node = state.destination.get(parent)
        if dst_encrypted or (parent_node is not None and parent_node.encrypted):
            steps.append(Step("inherit-key", target.name, f"inherit {parent}'s key",
                              f"zfs change-key -i {target.name}"))
    if staged(state):
        steps += _move_steps(request, state)
    steps.append(Step("cold-start", dst, "export; import under a temporary altroot; load "
                      "only DST's key; check encryption, encryptionroot and keystatus; "
                      "mount every file system",
                      f"zpool export {dst} && zpool import -R <tmp> {dst} && "
                      f"zfs load-key {dst} && zfs mount -a"))
    if request.root_data == "copy":
        steps.append(Step("copy-root-data", dst, f"files of {request.source}@{goal} copied "
                          "into DST's root, re-encrypted with DST's key"))
    if request.verify_mount:
        steps.append(Step("verify-files", dst, f"SHA-256 of every file in @{goal}, SRC vs DST"))
    steps.append(Step("reimport", dst, "export; import without mounting or loading its key",
                      f"zpool export {dst} && zpool import -N {dst}"))
    steps.append(Step("unmark", dst, "", f"zfs inherit {MIGRATE_MARKER} {dst}"))
    return steps


def _move_steps(request: MigrateRequest, state: MigrateState) -> list[Step]:
    """Each child tree out of the staging to its name; then the staging itself (SRC root's
    copy) to DST/NAME with ``--root-data dataset:NAME``, without SRC's mount point and
    shares, or dropped."""
    assert state.destination is not None
    steps = []
    for child in state.source.children(request.source):
        staged_name = request.staged_name(child.name)
        if state.destination.get(staged_name) is not None:
            steps.append(_move(staged_name, request.destination_name(child.name), "",
                               volume=child.type == "volume"))
    staging = state.destination.get(request.staging)
    if request.root_dataset:
        final = request.destination_name(request.source)
        if staging is not None:
            steps.append(_move(request.staging, final, " (SRC root's own data)"))
        steps += [Step("inherit", final, f"not SRC root's {name}", f"zfs inherit {name} {final}",
                       name) for name in MOUNT_PROPERTIES if name in state.source_root_local]
    elif staging is not None:
        steps.append(Step("drop-staging", request.staging, "SRC root's copy, its children "
                          "moved out; SRC keeps the original, and ZFS refuses while a child "
                          "is left", f"zfs destroy {request.staging}@% && "
                          f"zfs destroy {request.staging}"))
    return steps


def _move(name: str, final: str, why: str, *, volume: bool = False) -> Step:
    """``zfs rename -u`` (nothing is remounted); a volume takes no ``-u``."""
    flag = "" if volume else "-u "
    return Step("move", name, f"to {final}{why}", f"zfs rename {flag}{name} {final}", final)


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
