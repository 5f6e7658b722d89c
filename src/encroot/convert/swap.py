"""Verifying the new tree, swapping it in by renames, and recovering any interrupted state.

The swap follows ``encroot receive``'s protocol (docs/design.md) with
convert's own names and markers (``encroot.owned``): the new tree
``X.encroot-convert`` carries ``encroot:convert`` (role ``phase`` from its
creation, ``verified`` once checked); the old tree is marked
``encroot:convert-replaced`` right before it is renamed aside.  ``advance``
reads ZFS, picks the one step that moves the state forward (the table in
docs/design.md) and runs it; ``finish`` repeats that until nothing is left.
A normal cutover and ``--recover`` run the same steps.

At every point either the old X is intact under its own name (or under the
marked aside name with the verified new tree beside it) or the new X is
complete under its name.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import EncrootError, VerificationFailed, ZfsError
from ..owned import (
    CONVERT_MARKER,
    CONVERT_REPLACED,
    ConvertKept,
    ConvertPhase,
    ConvertReplaced,
    ConvertVerified,
    NotOurs,
    Owner,
    dumps,
    refuse_live,
)
from ..zfs import Zfs
from .model import ConvertRefused, ConvertRequest, ConvertState, Tree
from .plan import DEFERRED_PROPERTIES, snapshots_missing
from .read import read_state, read_tree

__all__ = ["SwapReport", "advance", "finish", "refuse_live_owners", "verify"]

Say = Callable[[str], None]


@dataclass
class SwapReport:
    """What ``finish`` did, one line per step."""

    actions: list[str] = field(default_factory=list)


def refuse_live_owners(request: ConvertRequest, state: ConvertState) -> None:
    """Raise OwnerAlive when a running encroot holds any of this conversion's state."""
    refuse_live(request.temp, state.new_marker)
    if state.aside.top is not None:
        refuse_live(state.aside.root, state.aside.top.marker(CONVERT_REPLACED))
    if state.old.top is not None:
        refuse_live(request.dataset, state.old.top.marker(CONVERT_MARKER))


def verify(zfs: Zfs, request: ConvertRequest, keyformat: str | None) -> list[str]:
    """Compare the new tree with the old one: every snapshot with its GUID, no partial
    receive, the encryption as planned.  Two ``zfs get`` processes."""
    old, new = read_tree(zfs, request.dataset), read_tree(zfs, request.temp)
    parent = read_state(zfs, request).parent
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


def mark_verified(zfs: Zfs, request: ConvertRequest, snapshot: str, owner: Owner) -> None:
    marker = ConvertVerified(target=request.dataset, operation=request.operation,
                             snapshot=snapshot, keep_old=str(request.keep_old)
                             if request.keep_old else None, owner=owner)
    zfs.set(request.temp, {CONVERT_MARKER: dumps(marker)})


Action = tuple[str, Callable[[Zfs], None]]


def next_action(request: ConvertRequest, state: ConvertState, *, undo: bool,
                owner: Owner, mounted_before: Sequence[str] = ()) -> Action | None:
    """The one step that moves an interrupted conversion forward (None: nothing to do).

    ``undo``: an unverified new tree is destroyed (``--recover``); otherwise it is
    left for the next phase.  ``mounted_before``: file systems of X that cutover
    unmounted, mounted again after the swap even when ``canmount=noauto``.

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
                return (f"rename verified {temp} to {target}",
                        lambda z: z.rename(temp, target, no_remount=False))
            return (f"restore the old tree: rename {aside.root} to {target}",
                    lambda z: _restore(z, aside.root, target))
        if state.swapped:
            return (f"finish: properties, holds, mounts of {target}; "
                    + (f"keep the old tree as {aside.root}" if verified and verified.keep_old
                       else f"destroy the old tree {aside.root}"),
                    lambda z: _finish_swap(z, request, state, mounted_before))
        raise ConvertRefused(f"{target} and {aside.root} both exist and {target} is not the "
                             "verified new tree; inspect them (zfs list -r) and "
                             "docs/design.md; nothing was changed")
    if state.swapped:
        return (f"clear {CONVERT_MARKER} on {target}",
                lambda z: z.inherit(target, CONVERT_MARKER))
    if isinstance(state.new_marker, ConvertVerified):
        if any(n.get("mounted") == "yes" for n in state.old.nodes.values()):
            return (f"{target} was mounted again after verification: the new tree goes back "
                    "to an unverified phase (run cutover again)",
                    lambda z: _demote(z, request, owner))
        aside_name = request.old_aside
        return (f"swap in verified {temp}: move {target} aside to {aside_name}",
                lambda z: _mark_and_rename(z, request, aside_name, owner))
    if state.new.exists and not state.new_ours:
        marker = state.new_marker
        why = marker.reason if isinstance(marker, NotOurs) else "it carries no encroot marker"
        raise ConvertRefused(f"{temp} looks like encroot's but is not encroot's ({why}); "
                             f"encroot does not touch it (zfs destroy -r {shlex.quote(temp)} "
                             "if it is yours to drop); nothing was changed")
    marker = state.new_marker
    unmounted = _should_mount(state.old)
    if isinstance(marker, ConvertPhase) and marker.phase == "cutover" and unmounted:
        return (f"an interrupted cutover left {target} unmounted: mount "
                f"{', '.join(unmounted)} again", lambda z: _mount_all(z, unmounted))
    if state.new.exists and undo:
        return (f"undo: destroy the unfinished {temp}",
                lambda z: z.destroy(temp, recursive=True))
    return None


def _restore(zfs: Zfs, aside: str, target: str) -> None:
    zfs.rename(aside, target, no_remount=False)
    zfs.inherit(target, CONVERT_REPLACED)


def _demote(zfs: Zfs, request: ConvertRequest, owner: Owner) -> None:
    marker = ConvertPhase(target=request.dataset, operation=request.operation,
                          phase="cutover", owner=owner)
    zfs.set(request.temp, {CONVERT_MARKER: dumps(marker)})


def _mark_and_rename(zfs: Zfs, request: ConvertRequest, aside: str, owner: Owner) -> None:
    marker = ConvertReplaced(target=request.dataset, operation=request.operation, owner=owner)
    zfs.set(request.dataset, {CONVERT_REPLACED: dumps(marker)})
    zfs.rename(request.dataset, aside, no_remount=False)


def _finish_swap(zfs: Zfs, request: ConvertRequest, state: ConvertState,
                 mounted_before: Sequence[str]) -> None:
    """After ``X.encroot-convert`` became X: the old tree's deferred properties and holds
    on the new one, mount it, then destroy (or keep) the old tree.  Each part skips what
    is done, so a repeat after a kill converges."""
    new, aside = state.old, state.aside
    for node in aside.nodes.values():
        name = request.dataset + node.name[len(aside.root):]
        copy = new.get(name)
        if copy is None or node.is_volume:
            continue
        wanted = {p: node.local[p] for p in DEFERRED_PROPERTIES if p in node.local}
        changes = {p: v for p, v in wanted.items() if copy.local.get(p) != v}
        zfs.set(name, changes)
        for prop in DEFERRED_PROPERTIES:  # canmount is never inherited, nor set locally here
            if prop not in wanted and prop in copy.local and prop != "canmount":
                zfs.inherit(name, prop)
    _move_holds(zfs, request, state)
    now = read_tree(zfs, request.dataset)
    _mount_all(zfs, _should_mount(now, also=mounted_before))
    verified = state.verified
    if verified is not None and verified.keep_old:
        kept = ConvertKept(target=request.dataset, operation=request.operation, owner=None)
        for node in aside.nodes.values():
            if not node.is_volume and node.get("canmount") == "on":
                zfs.set(node.name, {"canmount": "noauto"})
        zfs.set(aside.root, {CONVERT_REPLACED: dumps(kept)})
    else:
        for snap, tags in sorted(state.holds.items()):
            if snap.split("@")[0] in aside.nodes:
                for tag in tags:
                    zfs.release(tag, [snap])
        zfs.destroy(aside.root, recursive=True)
    zfs.inherit(request.dataset, CONVERT_MARKER)


def _move_holds(zfs: Zfs, request: ConvertRequest, state: ConvertState) -> None:
    aside = state.aside.root
    for snap, tags in sorted(state.holds.items()):
        if not (snap.startswith(aside + "@") or snap.startswith(aside + "/")):
            continue
        moved = request.dataset + snap[len(aside):]
        for tag in tags:
            if tag not in state.holds.get(moved, ()):
                zfs.hold(tag, [moved])


def _should_mount(tree: Tree, *, also: Sequence[str] = ()) -> list[str]:
    """Filesystems that mount by default (or are in ``also``) and are not mounted, parents
    first."""
    return [n.name for n in tree.ordered()
            if not n.is_volume and (n.get("canmount") == "on" or
                                    (n.name in also and n.get("canmount") == "noauto"))
            and n.get("mounted") == "no"
            and n.get("mountpoint") not in ("none", "legacy", "-")
            and n.get("keystatus") in ("available", "-")]


def _mount_all(zfs: Zfs, names: list[str]) -> None:
    for name in names:
        try:
            zfs.mount(name)
        except ZfsError as exc:
            raise EncrootError(f"could not mount {name}: {exc}") from exc


def advance(zfs: Zfs, request: ConvertRequest, *, undo: bool, owner: Owner,
            say: Say, mounted_before: Sequence[str] = ()) -> str | None:
    """Read ZFS and run the one next step; its description, or None when done."""
    state = read_state(zfs, request)
    refuse_live_owners(request, state)
    action = next_action(request, state, undo=undo, owner=owner,
                         mounted_before=mounted_before)
    if action is None:
        return None
    description, run = action
    say(f"{'recover' if undo else 'swap'}: {description}")
    run(zfs)
    return description


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
                       mounted_before=mounted_before)
        if done is None:
            return report
        report.actions.append(done)
    raise EncrootError(f"the swap of {request.dataset!r} did not converge; inspect it with "
                       f"`zfs list -r {request.dataset.pool}` and docs/design.md")


def require_verified(problems: list[str], request: ConvertRequest) -> None:
    if problems:
        raise VerificationFailed(f"{request.temp} does not match {request.dataset}: "
                                 f"{'; '.join(problems)}; the old tree is untouched")
