"""Files in a migration: SRC root's own files copied into DST's root, and every file
compared by SHA-256 between the goal snapshots of both sides (``--verify=mount``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import VerificationFailed
from ..hashes import file_hashes
from .model import MigrateRefused, MigrateState, Side
from .steps import Step

if TYPE_CHECKING:
    from .run import _Run

__all__ = ["VerificationFailed", "child_entries", "copy_root_data", "fail_on", "file_hashes",
           "verify_files"]


def fail_on(problems: Sequence[str], when: str) -> None:
    if problems:
        shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more"
                                           if len(problems) > 8 else "")
        raise VerificationFailed(f"{when}: {shown}")


def copy_root_data(run: _Run, step: Step, goal: str) -> None:
    """Copy SRC root's files (from the goal snapshot) into DST's mounted root."""
    state = run.state
    source_dir, target_dir = _snapshot_dir(state.source, goal), _mounted_dir(state, str(
        run.request.destination))
    children = child_entries(state.source)
    copied = 0
    for entry in sorted(os.listdir(source_dir)):
        if entry in children:
            continue
        _copy_entry(os.path.join(source_dir, entry), os.path.join(target_dir, entry))
        copied += 1
    os.sync()
    run.result.verified.append(f"{copied} entries of {run.request.source}@{goal} copied into "
                               f"{run.request.destination}, re-encrypted with its key")


def child_entries(side: Side) -> set[str]:
    """The first path components, below the root's mount point, of its children's."""
    root = side.root_node
    assert root is not None
    base = root.mountpoint.rstrip("/")
    return {n.mountpoint[len(base) + 1:].split("/", 1)[0] for n in side.nodes.values()
            if n.name != root.name and n.mountpoint.startswith(base + "/")}


def _copy_entry(source: str, target: str) -> None:
    import shutil  # here, not at the top: only a cutover copies files

    if os.path.isdir(source) and not os.path.islink(source):
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target, follow_symlinks=False)


def _snapshot_dir(side: Side, goal: str) -> str:
    root = side.root_node
    assert root is not None
    path = os.path.join(root.mountpoint, ".zfs", "snapshot", goal)
    if not os.path.isdir(path):
        raise MigrateRefused(f"{path}: not readable, so SRC root's files cannot be copied")
    return path


def _mounted_dir(state: MigrateState, name: str) -> str:
    assert state.destination is not None
    node = state.destination.get(name)
    if node is None or node.mounted != "yes":
        raise MigrateRefused(f"{name} is not mounted, so SRC root's files cannot be copied "
                             "into it (canmount or mountpoint?)")
    return node.mountpoint


def verify_files(run: _Run, step: Step, goal: str) -> None:
    """SHA-256 of every file of every migrated file system, in the goal snapshot on both sides."""
    state = run.state
    assert state.destination is not None
    problems, compared = [], 0
    for node in state.source.subtree(run.request.source):
        if node.name == run.request.source and not run.request.root_dataset:
            continue
        target = state.destination.get(run.request.destination_name(node.name))
        if node.type != "filesystem" or target is None or target.mounted != "yes" or \
                node.mounted != "yes":
            continue
        ours = file_hashes(os.path.join(node.mountpoint, ".zfs", "snapshot", goal))
        theirs = file_hashes(os.path.join(target.mountpoint, ".zfs", "snapshot", goal))
        if ours != theirs:
            differ = sorted(set(ours.items()) ^ set(theirs.items()))
            problems.append(f"{target.name}: {len(differ)} files differ "
                            f"(first: {differ[0][0]})")
        compared += len(ours)
    fail_on(problems, "file contents")
    run.result.verified.append(f"SHA-256 of {compared} files match SRC's @{goal}")


