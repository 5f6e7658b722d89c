"""The steps of a receive plan, each with the zfs commands it runs (pure).

A ``Step`` names its ``ReceiveAction`` (the executor dispatches on it with a
``match`` that mypy checks for completeness) and holds the state-changing
``Command``s it runs, built with the ZFS layer's ``ZfsCommands`` and the
owner the markers will name.  So ``-n``, ``--json`` and ``-v`` show the
commands as shell lines that paste correctly whatever the names hold, and
the executor runs these very commands instead of rebuilding them.

Where a step's commands are exact and where they are the plan's best
knowledge is said on ``Step``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from ..owned import (
    RECV_REPLACED,
    RECV_VERIFIED,
    Owner,
    ReceiveInProgress,
    ReceiveReplaced,
    ReceiveVerified,
    dumps,
)
from ..steps import CommandStep
from ..stream import StreamInfo
from ..zfs import ZfsCommands
from .state import Props, ReceiveRequest, TargetState, temp_name

__all__ = ["ReceiveAction", "Step", "direct_receive", "mounted_deepest_first",
           "replace_steps", "stream_guid"]


class ReceiveAction(Enum):
    """What a step does; the value is the name ``-n`` and ``--json`` print."""

    RECEIVE = "receive"
    VERIFY = "verify"
    MARK_VERIFIED = "mark-verified"
    UNMOUNT = "unmount"
    MARK_REPLACED = "mark-replaced"
    RENAME = "rename"
    DESTROY_OLD = "destroy-old"
    KEEP_OLD = "keep-old"
    CLEAR_VERIFIED = "clear-verified"
    MOUNT = "mount"


class Step(CommandStep[ReceiveAction]):
    """One thing the receive executor does (``encroot.steps.CommandStep``).

    Its commands are exact, markers and their owner included, for RECEIVE
    (the stream is its stdin), MARK_VERIFIED, MARK_REPLACED, RENAME,
    DESTROY_OLD, KEEP_OLD and CLEAR_VERIFIED.  The run decides two from what
    ZFS shows then: UNMOUNT lists what was mounted at planning, and unmounts
    what is mounted at the swap (deepest first); MOUNT lists the new tree's
    file systems that a raw stream leaves without a loaded key, and mounts
    those ZFS then shows mountable (``canmount=on``, a mountpoint, key loaded,
    not mounted), which may be fewer.  VERIFY only reads and holds none.
    """


def direct_receive(request: ReceiveRequest, detail: str, commands: ZfsCommands) -> Step:
    """The receive into the target itself, named as the caller named it (-d/-e, FS@SNAP).

    ``-n`` is left out: the plan shows the receive a real run makes, and a
    dry run stops after planning.
    """
    options = [flag for flag in request.zfs_flags() if flag != "-n"]
    command = commands.receive(request.zfs_target(), options=options,
                               properties=request.properties, excluded=request.excluded)
    return Step(ReceiveAction.RECEIVE, request.target, detail, (command,))


def replace_steps(request: ReceiveRequest, state: TargetState, old: str, stream: StreamInfo,
                  *, owner: Owner, commands: ZfsCommands,
                  mount: Sequence[str]) -> tuple[Step, ...]:
    """Receive beside the target, verify, mark both trees, swap by renames, drop or keep
    the old tree.

    The two markers come before the unmount, so the old tree is out of service
    only for the renames; the executor writes them at the same time, and likewise
    drops or keeps the old tree while it clears the verified marker
    (``run._TOGETHER``).  ``mount``: the new tree's file systems the MOUNT step
    expects to mount (without ``-u``).
    """
    target = state.target
    temp = temp_name(target)
    mounted = mounted_deepest_first(state.tree)
    options = ["-u"] + (["-s"] if request.resumable else []) + (
        ["-v"] if request.verbose else [])
    receiving = ReceiveInProgress(target=target, owner=owner)  # ownership from creation on
    receive = commands.receive(request.zfs_target(temp), options=options,
                               properties={**request.properties,
                                           RECV_VERIFIED: dumps(receiving)},
                               excluded=request.excluded)
    keep = request.keep_old
    verified = ReceiveVerified(guid=stream_guid(stream),
                               keep_old=None if keep is None else str(keep), owner=owner)
    replaced = ReceiveReplaced(target=target, owner=owner)
    steps = [
        Step(ReceiveAction.RECEIVE, temp,
             "zfs receive -u into the temporary sibling, marked as this process's from its "
             "creation" + ("; the old tree stays mounted" if mounted else ""), (receive,)),
        Step(ReceiveAction.VERIFY, temp, "snapshot GUIDs and encryption as the stream says"),
        Step(ReceiveAction.MARK_VERIFIED, temp, "the verified marker: stream GUID, keep-old "
             "NAME", (commands.set(temp, {RECV_VERIFIED: dumps(verified)}),)),
        Step(ReceiveAction.MARK_REPLACED, target, f"the replaced marker naming {target}",
             (commands.set(target, {RECV_REPLACED: dumps(replaced)}),)),
        Step(ReceiveAction.UNMOUNT, target, "the old tree, deepest first, for the swap only: "
             + (", ".join(mounted) if mounted else "what is mounted then"),
             tuple(commands.unmount(name) for name in mounted)),
        Step(ReceiveAction.RENAME, target, old,
             (commands.rename(target, old, no_remount=False),)),
        Step(ReceiveAction.RENAME, temp, target,
             (commands.rename(temp, target, no_remount=False),)),
        Step(ReceiveAction.KEEP_OLD, old, "old tree kept",
             (commands.inherit(old, RECV_REPLACED),)) if keep else
        Step(ReceiveAction.DESTROY_OLD, old, "zfs destroy -r",
             (commands.destroy(old, recursive=True),)),
        Step(ReceiveAction.CLEAR_VERIFIED, target, f"zfs inherit {RECV_VERIFIED}",
             (commands.inherit(target, RECV_VERIFIED),)),
    ]
    if not request.no_mount:
        steps.append(Step(ReceiveAction.MOUNT, target, "file systems whose keys are loaded",
                          tuple(commands.mount(name) for name in mount)))
    return tuple(steps)


def stream_guid(stream: StreamInfo) -> str:
    """The GUID of the snapshot the stream's top lands as (the verified marker's)."""
    if not stream.package:
        return str(stream.toguid)
    top = stream.datasets[0] if stream.datasets else None
    snaps = {s.name: s.guid for s in top.snapshots} if top else {}
    return str(snaps.get(stream.tosnap or "", 0))


def mounted_deepest_first(tree: dict[str, Props]) -> list[str]:
    """The mounted file systems of a tree, children before their parents."""
    return sorted((n for n, p in tree.items() if p.get("mounted") == "yes"),
                  key=lambda n: (-n.count("/"), n))
