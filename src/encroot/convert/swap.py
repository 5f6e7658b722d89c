"""Verifying the new tree, swapping it in by renames, and recovering any interrupted state.

The swap follows ``encroot receive``'s protocol (docs/design.md) with
convert's own names and markers (``encroot.owned``): the new tree
``X.encroot-convert`` carries ``encroot:convert`` (role ``phase`` from its
creation, ``verified`` once checked); the old tree is marked
``encroot:convert-replaced`` right before it is renamed aside.  ``advance``
reads ZFS; ``next_action`` picks the move forward (the table in
docs/design.md) as typed steps holding their commands (``steps.py``, the
same builders as the cutover plan's), and ``run_step`` runs them, dispatching
on ``SwapAction``; ``finish`` repeats that until nothing is left.  A normal
cutover and ``--recover`` run the same steps.

At every point either the old X is intact under its own name (or under the
marked aside name with the verified new tree beside it) or the new X is
complete under its name.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from typing import assert_never

from ..errors import EncrootError, InputError, VerificationFailed, ZfsError
from ..owned import (
    CONVERT_MARKER,
    CONVERT_REPLACED,
    ConvertPhase,
    ConvertReplaced,
    ConvertVerified,
    NotOurs,
    Owner,
    refuse_live,
)
from ..records import field, record
from ..zfs import Command, Zfs, ZfsCommands
from .model import ConvertRefused, ConvertRequest, ConvertState, Tree
from .plan import snapshots_missing
from .read import read_details, read_parent, read_state, read_tree, read_trees
from .steps import (
    Step,
    SwapAction,
    SwapMove,
    demote_step,
    finish_steps,
    mountable,
    swap_in_steps,
)

__all__ = ["SwapReport", "advance", "finish", "next_action", "refuse_live_owners",
           "run_step", "verify"]

Say = Callable[[str], None]


@record
class SwapReport:
    """What ``finish`` did, one line per step, and when the new tree was mounted (the
    ``time.monotonic()`` at the end of the mount step: cutover's downtime ends there)."""

    actions: list[str] = field(default_factory=list)
    mounted_at: float | None = None


def refuse_live_owners(request: ConvertRequest, state: ConvertState) -> None:
    """Raise OwnerAlive when a running encroot holds any of this conversion's state."""
    refuse_live(request.temp, state.new_marker)
    if state.aside.top is not None:
        refuse_live(state.aside.root, state.aside.top.marker(CONVERT_REPLACED))
    if state.old.top is not None:
        refuse_live(request.dataset, state.old.top.marker(CONVERT_MARKER))


def verify(zfs: Zfs, request: ConvertRequest, keyformat: str | None) -> list[str]:
    """Compare the new tree with the old one: every snapshot with its GUID, no partial
    receive, the encryption as planned.  Two ``zfs get`` processes at once: both trees,
    and the parent (whose encryption root the new tree inherits with ``--inherit``)."""
    trees, parent = zfs.concurrently(lambda: read_trees(zfs, [request.dataset, request.temp]),
                                     lambda: read_parent(zfs, request.dataset))
    old, new = trees[request.dataset], trees[request.temp]
    problems: list[str] = []
    for node in old.nodes.values():
        name = request.new_name(node.name)
        copy = new.get(name)
        if copy is None:
            problems.append(f"{name} is missing")
            continue
        problems += [f"{request.new_name(m)} is missing or has another GUID"
                     for m in snapshots_missing(node, copy)]
        if copy.resume_token is not None:
            problems.append(f"{name} holds a partial receive")
        problems += _encryption_problems(request, copy.values, name, parent, keyformat)
    extra = sorted(set(new.nodes) - {request.new_name(n) for n in old.nodes})
    problems += [f"{name} has no counterpart in {request.dataset}" for name in extra]
    return problems


def _encryption_problems(request: ConvertRequest, props: dict[str, str] | object, name: str,
                         parent: object, keyformat: str | None) -> list[str]:
    assert isinstance(props, dict) and isinstance(parent, dict)
    encryption = props.get("encryption", "off")
    if not request.encrypted_result:
        return [] if encryption == "off" else [f"{name} is encrypted ({encryption})"]
    problems = []
    if encryption in ("off", "-"):
        problems.append(f"{name} is not encrypted")
    root = request.temp if request.own_root else parent.get("encryptionroot")
    if props.get("encryptionroot") != root:
        problems.append(f"{name} has encryption root {props.get('encryptionroot')}, "
                        f"expected {root}")
    if props.get("keystatus") != "available":
        problems.append(f"{name}: key {props.get('keystatus')}, expected available")
    if keyformat and request.own_root and name == request.temp and \
            props.get("keyformat") != keyformat:
        problems.append(f"{name}: keyformat {props.get('keyformat')}, expected {keyformat}")
    return problems


def next_action(request: ConvertRequest, state: ConvertState, *, undo: bool,
                owner: Owner, commands: ZfsCommands,
                mounted_before: Sequence[str] = ()) -> SwapMove | None:
    """What moves an interrupted conversion forward (None: nothing to do), as typed steps
    whose commands are built from ``state``.

    ``undo``: an unverified new tree is destroyed (``--recover``); otherwise it is
    left for the next phase.  ``mounted_before``: file systems of X that cutover
    unmounted, mounted again after the swap even when ``canmount=noauto``.  A state
    read without its details gets, for the move that needs them, a move with no steps
    and ``needs_details`` set.

    Raises:
        ConvertRefused: a name in the way is not encroot's, or the state is impossible.
    """
    target, temp = request.dataset, request.temp
    aside = state.aside
    replaced = state.aside_marker
    verified = state.verified
    if isinstance(replaced, ConvertReplaced) and replaced.target == target:
        if not state.old.exists:
            if isinstance(state.new_marker, ConvertVerified):
                return SwapMove(f"rename verified {temp} to {target}", (Step(
                    SwapAction.RENAME, temp, str(target),
                    (commands.rename(temp, target, no_remount=False),)),))
            return SwapMove(f"restore the old tree: rename {aside.root} to {target}", (Step(
                SwapAction.RESTORE_OLD, aside.root, str(target),
                (commands.rename(aside.root, target, no_remount=False),
                 commands.inherit(target, CONVERT_REPLACED))),))
        if state.swapped:
            keep = verified is not None and verified.keep_old is not None
            description = (f"finish: properties, holds, mounts of {target}; "
                           + (f"keep the old tree as {aside.root}" if keep
                              else f"destroy the old tree {aside.root}"))
            if not state.details:
                return SwapMove(description, (), needs_details=True)
            return SwapMove(
                description,
                finish_steps(request, aside, aside.root, copies=state.old.nodes,
                             holds=state.holds, existing=state.holds, also=mounted_before,
                             keep=keep, commands=commands))
        raise ConvertRefused(f"{target} and {aside.root} both exist and {target} is not the "
                             "verified new tree; inspect them (zfs list -r) and "
                             "docs/design.md; nothing was changed")
    if state.swapped:
        return SwapMove(f"clear {CONVERT_MARKER} on {target}", (Step(
            SwapAction.CLEAR, target, f"zfs inherit {CONVERT_MARKER}",
            (commands.inherit(target, CONVERT_MARKER),)),))
    if isinstance(state.new_marker, ConvertVerified):
        if any(n.get("mounted") == "yes" for n in state.old.nodes.values()):
            return SwapMove(f"{target} was mounted again after verification: the new tree "
                            "goes back to an unverified phase (run cutover again)",
                            (demote_step(request, owner=owner, commands=commands),))
        return SwapMove(f"swap in verified {temp}: move {target} aside to "
                        f"{request.old_aside}",
                        swap_in_steps(request, owner=owner, commands=commands))
    if state.new.exists and not state.new_ours:
        marker = state.new_marker
        why = marker.reason if isinstance(marker, NotOurs) else "it carries no encroot marker"
        raise ConvertRefused(f"{temp} looks like encroot's but is not encroot's ({why}); "
                             f"encroot does not touch it (zfs destroy -r {shlex.quote(temp)} "
                             "if it is yours to drop); nothing was changed")
    marker = state.new_marker
    unmounted = _should_mount(state.old)
    if isinstance(marker, ConvertPhase) and marker.phase == "cutover" and unmounted:
        return SwapMove(f"an interrupted cutover left {target} unmounted: mount "
                        f"{', '.join(unmounted)} again", (Step(
                            SwapAction.MOUNT_AGAIN, target, "what cutover unmounted",
                            tuple(commands.mount(name) for name in unmounted)),))
    if state.new.exists and undo:
        return SwapMove(f"undo: destroy the unfinished {temp}", (Step(
            SwapAction.UNDO, temp, "zfs destroy -r",
            (commands.destroy(temp, recursive=True),)),))
    return None


def _should_mount(tree: Tree, *, also: Sequence[str] = ()) -> list[str]:
    """Filesystems that mount by default (or are in ``also``) and are not mounted, whose
    key is loaded, parents first."""
    return [n.name for n in tree.ordered()
            if mountable(n, was_mounted=n.name in also) and n.get("mounted") == "no"
            and n.get("keystatus") in ("available", "-")]


def _mount(zfs: Zfs, command: Command) -> None:
    try:
        zfs.execute(command)
    except ZfsError as exc:
        raise EncrootError(f"could not mount {command.argv[-1]}: {exc}") from exc


def run_step(zfs: Zfs, request: ConvertRequest, step: Step,
             mounted_before: Sequence[str] = ()) -> None:
    """The code for each swap action; mypy checks that every ``SwapAction`` has a case.

    Raises:
        InputError: ``step`` is a phase's step, not the swap's.
        EncrootError: a file system could not be mounted (``zfs mount``'s message).
        ZfsError: a command failed; the next run continues from what ZFS shows.
    """
    action = step.action
    if not isinstance(action, SwapAction):
        raise InputError(f"{action.value}: a phase's step, run by the phase, not the swap")
    match action:
        case SwapAction.MOUNT:  # what ZFS shows mountable now that the properties are back
            now = read_tree(zfs, request.dataset, snapshots=False)
            for name in _should_mount(now, also=mounted_before):
                _mount(zfs, zfs.commands.mount(name))
        case SwapAction.MOUNT_AGAIN:
            for command in step.commands:
                _mount(zfs, command)
        case (SwapAction.MARK_REPLACED | SwapAction.RENAME | SwapAction.RESTORE
              | SwapAction.HOLD | SwapAction.DESTROY_OLD | SwapAction.KEEP_OLD
              | SwapAction.CLEAR | SwapAction.RESTORE_OLD | SwapAction.DEMOTE
              | SwapAction.UNDO):
            for command in step.commands:
                zfs.execute(command)
        case _:
            assert_never(action)


def advance(zfs: Zfs, request: ConvertRequest, *, undo: bool, owner: Owner,
            say: Say, mounted_before: Sequence[str] = (),
            report: SwapReport | None = None) -> str | None:
    """Read ZFS and run the next move's steps; its description, or None when done.

    Raises:
        OwnerAlive: a running encroot holds the state (nothing was changed).
        ConvertRefused: a name in the way is not encroot's.
        EncrootError, ZfsError: a step failed (see ``run_step``).
    """
    state = read_state(zfs, request, pool=False, details=False)
    refuse_live_owners(request, state)
    move = next_action(request, state, undo=undo, owner=owner, commands=zfs.commands,
                       mounted_before=mounted_before)
    if move is not None and move.needs_details:
        state = read_details(zfs, state)
        move = next_action(request, state, undo=undo, owner=owner, commands=zfs.commands,
                           mounted_before=mounted_before)
    if move is None:
        return None
    say(f"{'recover' if undo else 'swap'}: {move.description}")
    for step in move.steps:
        run_step(zfs, request, step, mounted_before)
        if report is not None and step.action is SwapAction.MOUNT:
            report.mounted_at = time.monotonic()
    return move.description


def finish(zfs: Zfs, request: ConvertRequest, *, undo: bool = False,
           owner: Owner | None = None, say: Say = lambda line: None,
           mounted_before: Sequence[str] = ()) -> SwapReport:
    """Run ``advance`` until nothing is left (a normal swap, or ``--recover``).

    Raises:
        OwnerAlive: a running encroot holds the state (nothing was changed).
        ConvertRefused: a name in the way is not encroot's.
        ZfsError: a step failed; the next call continues from what ZFS shows.
    """
    report = SwapReport()
    me = owner or Owner.current()
    for _ in range(10):  # each pass moves one state forward; the table has fewer
        done = advance(zfs, request, undo=undo, owner=me, say=say,
                       mounted_before=mounted_before, report=report)
        if done is None:
            return report
        report.actions.append(done)
    raise EncrootError(f"the swap of {request.dataset!r} did not converge; inspect it with "
                       f"`zfs list -r {request.dataset.pool}` and docs/design.md")


def require_verified(problems: list[str], request: ConvertRequest) -> None:
    if problems:
        raise VerificationFailed(f"{request.temp} does not match {request.dataset}: "
                                 f"{'; '.join(problems)}; the old tree is untouched")
