"""The steps of a conversion, each with the zfs commands it runs (pure).

A ``Step`` names its action and holds the state-changing ``Command``s it
runs, built with the ZFS layer's ``ZfsCommands`` and the owner the markers
name; ``-n``, ``--json`` and ``-v`` show them as shell lines that paste
correctly whatever the names hold.  Two enums, because two executors run
them: ``ConvertAction`` the phase's own steps (``run.py``: unmount, snapshot,
transfers, verification, the verified marker), ``SwapAction`` the swap's
(``swap.py``, the state machine that a normal cutover and ``--recover``
share).  Each dispatches with a ``match`` whose default is ``assert_never``,
so mypy rejects an action without code.

The swap's steps are built here once, by the same functions for the
cutover plan (a preview, from the state before the transfers) and for the
state machine (from what ZFS shows at that moment), so that the plan shows
what the swap will run.  Where a step's commands are the plan's best
knowledge rather than exact is said on ``Step``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum

from ..owned import (
    CONVERT_MARKER,
    CONVERT_REPLACED,
    ConvertKept,
    ConvertPhase,
    ConvertReplaced,
    ConvertVerified,
    Owner,
    dumps,
)
from ..records import record
from ..steps import CommandStep
from ..zfs import Command, ZfsCommands
from .model import ConvertRequest, ConvertState, Node, Tree

__all__ = ["DEFERRED_PROPERTIES", "ConvertAction", "Step", "SwapAction", "SwapMove",
           "finish_steps", "mountable", "mounted", "phase_steps", "swap_in_steps"]

# Withheld from the first receive, set at the swap (see plan.py).
DEFERRED_PROPERTIES = ("mountpoint", "canmount", "sharenfs", "sharesmb")


class ConvertAction(Enum):
    """A phase's own step (run by ``run.py``); the value is what ``-n`` prints."""

    UNMOUNT = "unmount"
    SNAPSHOT = "snapshot"
    TRANSFER = "transfer"
    VERIFY = "verify"
    MARK_VERIFIED = "mark-verified"


class SwapAction(Enum):
    """A step of the swap or of its recovery (run by ``swap.py``)."""

    MARK_REPLACED = "mark-replaced"
    RENAME = "rename"
    RESTORE = "restore"
    HOLD = "hold"
    MOUNT = "mount"
    DESTROY_OLD = "destroy-old"
    KEEP_OLD = "keep-old"
    CLEAR = "clear"
    RESTORE_OLD = "restore-old"
    DEMOTE = "demote"
    MOUNT_AGAIN = "mount-again"
    UNDO = "undo"


class Step(CommandStep[ConvertAction | SwapAction]):
    """One thing a conversion's executor does (``encroot.steps.CommandStep``).

    Its commands are exact, markers and owners included, for SNAPSHOT,
    MARK_VERIFIED and every swap step but two.  UNMOUNT lists what was mounted
    at planning and unmounts what is mounted when it runs.  MOUNT lists the
    file systems that mount by default (or were mounted before cutover), and
    mounts those ZFS then shows mountable.  In a cutover plan (a preview made
    before the last transfers) RESTORE assumes the new datasets have no local
    mount properties yet, which is how the transfers leave them.  TRANSFER
    holds none: its pipelines are the plan's transfers, each with its
    commands; VERIFY only reads.
    """


@record(frozen=True)
class SwapMove:
    """What the swap's state machine does next: why (``SwapReport`` keeps it), and the
    steps, run in order without reading ZFS again in between."""

    description: str
    steps: tuple[Step, ...]
    # the move is built from the local properties and holds, which the state it was
    # chosen from lacks (``ConvertState.details``): read them, then choose again
    needs_details: bool = False


def mounted(tree: Tree) -> list[str]:
    """The tree's mounted filesystems, deepest first."""
    return sorted((n.name for n in tree.nodes.values() if n.get("mounted") == "yes"),
                  key=lambda name: -name.count("/"))


def mountable(node: Node, *, was_mounted: bool = False) -> bool:
    """A file system that mounts by default, or is ``noauto`` and was mounted before."""
    return (not node.is_volume
            and (node.get("canmount") == "on"
                 or (was_mounted and node.get("canmount") == "noauto"))
            and node.get("mountpoint") not in ("none", "legacy", "-"))


def phase_steps(request: ConvertRequest, state: ConvertState, phase: str, goal: str, *,
                owner: Owner, commands: ZfsCommands) -> tuple[Step, ...]:
    """A phase's steps: (cutover: unmount,) snapshot, transfers (cutover: verify, mark
    verified, then the swap's steps as the plan foresees them)."""
    target, temp = request.dataset, request.temp
    steps = []
    if phase == "cutover":
        down = mounted(state.old)
        steps.append(Step(ConvertAction.UNMOUNT, target, "downtime starts; the old tree, "
                          "deepest first: " + (", ".join(down) or "what is mounted then"),
                          tuple(commands.unmount(name) for name in down)))
    steps += [
        Step(ConvertAction.SNAPSHOT, target, "the goal snapshot, recursive",
             (commands.snapshot([f"{target}@{goal}"], recursive=True),)),
        Step(ConvertAction.TRANSFER, temp, "the last incrementals" if phase == "cutover"
             else "the transfers, partial receives resumed first"),
    ]
    if phase != "cutover":
        return tuple(steps)
    verified = ConvertVerified(target=target, operation=request.operation, snapshot=goal,
                               keep_old=str(request.keep_old) if request.keep_old else None,
                               owner=owner)
    steps += [
        Step(ConvertAction.VERIFY, temp, "every snapshot with its GUID; encryption, "
             "encryptionroot, keyformat, keystatus as planned"
             + ("; every file's SHA-256 (both trees mounted read-only)"
                if request.verify_mount else "")),
        Step(ConvertAction.MARK_VERIFIED, temp, "the verified marker",
             (commands.set(temp, {CONVERT_MARKER: dumps(verified)}),)),
        *swap_in_steps(request, owner=owner, commands=commands),
        Step(SwapAction.RENAME, temp, str(target),
             (commands.rename(temp, target, no_remount=False),)),
    ]
    # after the transfers every old dataset has its copy, with no local mount property
    copies = {name: Node(name) for name in state.old.nodes}
    existing = {request.old_name(snap): tags for snap, tags in state.holds.items()
                if snap.startswith((temp + "@", temp + "/"))}
    steps += finish_steps(request, state.old, request.old_aside, copies=copies,
                          holds=state.holds, existing=existing, also=down,
                          keep=request.keep_old is not None, commands=commands)
    return tuple(steps)


def swap_in_steps(request: ConvertRequest, *, owner: Owner,
                  commands: ZfsCommands) -> tuple[Step, ...]:
    """Mark the old tree replaced, then rename it aside (``--keep-old`` or the default)."""
    target, aside = request.dataset, request.old_aside
    replaced = ConvertReplaced(target=target, operation=request.operation, owner=owner)
    return (Step(SwapAction.MARK_REPLACED, target, f"the replaced marker naming {target}",
                 (commands.set(target, {CONVERT_REPLACED: dumps(replaced)}),)),
            Step(SwapAction.RENAME, target, aside,
                 (commands.rename(target, aside, no_remount=False),)))


def demote_step(request: ConvertRequest, *, owner: Owner, commands: ZfsCommands) -> Step:
    """A verified new tree back to a phase marker: the old one was mounted again."""
    marker = ConvertPhase(target=request.dataset, operation=request.operation,
                          phase="cutover", owner=owner)
    return Step(SwapAction.DEMOTE, request.temp, "back to an unverified phase",
                (commands.set(request.temp, {CONVERT_MARKER: dumps(marker)}),))


def finish_steps(request: ConvertRequest, old: Tree, where: str, *,
                 copies: Mapping[str, Node], holds: Mapping[str, Sequence[str]],
                 existing: Mapping[str, Sequence[str]], also: Sequence[str], keep: bool,
                 commands: ZfsCommands) -> tuple[Step, ...]:
    """After the new tree became X: the old tree's deferred properties and holds on the
    new one, mount it, destroy (or keep) the old tree, clear the verified marker.

    ``old`` is the old tree as read (its names under ``old.root``), ``where`` its top's
    name when these steps run (the aside name); ``copies`` the new datasets by their
    final names; ``holds`` every hold read (those below ``old.root`` are moved),
    ``existing`` the holds the new snapshots already have, by final name; ``also`` the
    file systems cutover unmounted.  Each part skips what is done, so that a repeat
    after a kill converges.
    """
    target = request.dataset

    def final(name: str) -> str:
        return target + name[len(old.root):]

    def moved(name: str) -> str:
        return where + name[len(old.root):]

    restore: list[Command] = []
    for node in old.nodes.values():
        copy = copies.get(final(node.name))
        if copy is None or node.is_volume:
            continue
        wanted = {p: node.local[p] for p in DEFERRED_PROPERTIES if p in node.local}
        changes = {p: v for p, v in wanted.items() if copy.local.get(p) != v}
        if changes:
            restore.append(commands.set(final(node.name), changes))
        restore += [commands.inherit(final(node.name), prop) for prop in DEFERRED_PROPERTIES
                    # canmount is never inherited in ZFS, nor set locally here
                    if prop not in wanted and prop in copy.local and prop != "canmount"]
    hold = [commands.hold(tag, [final(snap)]) for snap, tags in sorted(holds.items())
            if snap.startswith((old.root + "@", old.root + "/"))
            for tag in tags if tag not in existing.get(final(snap), ())]
    mount = [commands.mount(final(node.name)) for node in old.ordered()
             if mountable(node, was_mounted=final(node.name) in also)]
    steps = [
        Step(SwapAction.RESTORE, target, "mountpoint, canmount, sharenfs, sharesmb as on "
             "the old tree", tuple(restore)),
        Step(SwapAction.HOLD, target, "the old tree's holds on the same snapshots",
             tuple(hold)),
        Step(SwapAction.MOUNT, target, "where the old tree was mounted; downtime ends",
             tuple(mount)),
    ]
    if keep:
        kept = ConvertKept(target=target, operation=request.operation, owner=None)
        noauto = [commands.set(moved(node.name), {"canmount": "noauto"})
                  for node in old.nodes.values()
                  if not node.is_volume and node.get("canmount") == "on"]
        steps.append(Step(SwapAction.KEEP_OLD, where, "kept, canmount=noauto", (
            *noauto, commands.set(where, {CONVERT_REPLACED: dumps(kept)}))))
    else:
        release = [commands.release(tag, [moved(snap)]) for snap, tags in sorted(holds.items())
                   if snap.split("@")[0] in old.nodes for tag in tags]
        steps.append(Step(SwapAction.DESTROY_OLD, where, "its holds released, then zfs "
                          "destroy -r", (*release, commands.destroy(where, recursive=True))))
    steps.append(Step(SwapAction.CLEAR, target, f"zfs inherit {CONVERT_MARKER}",
                      (commands.inherit(target, CONVERT_MARKER),)))
    return tuple(steps)
