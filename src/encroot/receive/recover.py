"""Recovering an interrupted replacement: finish it from verified state, undo it otherwise.

``recover`` reads the state, refuses while a live encroot owns any of it
(``OwnerAlive``), and takes one step at a time from the table in
docs/design.md until nothing is left.  It acts only on what carries a
marker that parses (``encroot.owned``): a temporary without one is not
encroot's and is never destroyed.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence

from ..errors import EncrootError, OwnerAlive, SwapPending, ZfsError
from ..names import DatasetName
from ..owned import (
    RECV_OLD_SUFFIX,
    RECV_REPLACED,
    RECV_VERIFIED,
    Owner,
    ReceiveInProgress,
    ReceiveReplaced,
    dumps,
    parse_marker,
    processes_with_argument,
)
from ..owned.owner import host_id
from ..records import field, record
from ..zfs import Zfs
from .state import ReceiveRefused, TargetState, get_tree, read_state, temp_name
from .steps import mounted_deepest_first

__all__ = ["Orphan", "RecoveryReport", "orphan_receives", "process_scan", "recover", "rename",
           "unmount_for_swap", "wait_for_orphans"]

# How long recovery waits for a zfs receive whose encroot died to see its stream end.
ORPHAN_WAIT_SECONDS = 60.0


@record
class RecoveryReport:
    """What ``recover`` did, one line per step."""

    target: str
    actions: list[str] = field(default_factory=list)


def recover(zfs: Zfs, target: DatasetName, *, keep_resumable: bool = False,
            unmount_old: bool = True, take_over: str | None = None,
            say: Callable[[str], None] = lambda line: None) -> RecoveryReport:
    """Bring an interrupted replacement of ``target`` to a clean end (see docs/design.md).

    Rolls forward from verified state, rolls back otherwise; never destroys
    the only copy of anything.  Idempotent: a second call finds nothing to do.
    A verified replacement beside a mounted old tree is swapped in after
    unmounting it, unless ``unmount_old`` is False (then ``ReceiveRefused``).
    ``zfs`` may run on another host (``Zfs(remote=...)``): every step, the wait
    for an orphan receive included, runs there.  ``take_over`` is the host id
    of a marker's owner on another host that the caller says is gone.

    Raises:
        OwnerAlive: a running encroot process holds the state, or a zfs receive
            that a dead encroot started still runs after a minute (nothing was changed).
        ReceiveRefused: a temporary without encroot's marker is in the way, the
            old tree is mounted and ``unmount_old`` is False, or an encroot of
            another host holds the state and ``take_over`` does not name it.
        SwapPending: the old tree is busy; the verified new tree waits (nothing
            was destroyed).
        ZfsError: a step failed; the next call continues from what ZFS shows.
    """
    report = RecoveryReport(str(target))
    wait_for_orphans(target, say=say, scan=process_scan(zfs), take_over=take_over)
    for _ in range(6):  # each pass moves one state forward; six is more than the table has
        state = read_state(zfs, target)
        state.refuse_live_owner(take_over)
        action = next_recovery_action(state, keep_resumable, unmount_old=unmount_old)
        if action is None:
            return report
        description, run = action
        say(f"recover: {description}")
        run(zfs)
        report.actions.append(description)
    raise EncrootError(f"recovery of {target!r} did not converge; inspect with `zfs list -r "
                       f"{target.pool}` and docs/design.md")


@record(frozen=True)
class Orphan:
    """A ``zfs receive`` still running for a target after the encroot that started it died."""

    pid: int
    owner: Owner


def orphan_receives(target: str, found: Sequence[tuple[int, str]], *,
                    take_over: str | None = None) -> list[Orphan]:
    """The orphans among ``found`` (pid, argument) for ``target``.

    encroot starts every receive into a temporary with ``-o
    encroot:recv-verified=<receiving marker>``, so the marker in a running
    process's arguments names the target and the encroot that started it.
    A receive whose encroot lives is that encroot's (``OwnerAlive`` covers it).
    One started by an encroot of another host is an orphan only when
    ``take_over`` names that host: its liveness cannot be checked here, and
    the marker it wrote is refused until then (``TargetState.refuse_live_owner``).
    """
    here = host_id()
    prefix = f"{RECV_VERIFIED}="
    orphans = []
    for pid, argument in found:
        if not argument.startswith(prefix):
            continue
        marker = parse_marker(RECV_VERIFIED, argument[len(prefix):])
        if not (isinstance(marker, ReceiveInProgress) and marker.target == target
                and marker.owner is not None):
            continue
        owner = marker.owner
        gone = not owner.alive() if owner.host == here else owner.host == take_over
        if gone:
            orphans.append(Orphan(pid, owner))
    return orphans


def wait_for_orphans(target: str, *, say: Callable[[str], None] = lambda line: None,
                     timeout: float = ORPHAN_WAIT_SECONDS,
                     scan: Callable[[str], Sequence[tuple[int, str]]] = processes_with_argument,
                     clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep,
                     take_over: str | None = None) -> None:
    """Wait until no ``zfs receive`` started by a dead encroot writes into ``target``'s state.

    Such a receive reads a pipe whose only writer was the dead encroot, so it
    sees its stream end and ZFS undoes it (or keeps a resumable ``-s`` state);
    until it has exited, ZFS refuses to destroy its dataset and the state
    recovery reads may still change.  ``scan`` lists the processes of the
    host the receive runs on (``process_scan``).

    Raises:
        OwnerAlive: one still runs after ``timeout`` seconds (nothing was changed).
    """
    deadline = clock() + timeout
    announced: set[int] = set()
    while True:
        orphans = orphan_receives(target, scan(f"{RECV_VERIFIED}="), take_over=take_over)
        if not orphans:
            return
        for orphan in orphans:
            if orphan.pid not in announced:
                announced.add(orphan.pid)
                say(f"waiting for zfs receive pid {orphan.pid} to end: "
                    f"{orphan.owner.describe()} started it and is gone")
        if clock() >= deadline:
            orphan = orphans[0]
            raise OwnerAlive(subject=temp_name(target), pid=orphan.pid,
                             holder=f"zfs receive pid {orphan.pid}, started by "
                                    f"{orphan.owner.describe()}, which is gone; it still "
                                    f"runs after {timeout:.0f} s")
        sleep(0.2)


def process_scan(zfs: Zfs) -> Callable[[str], Sequence[tuple[int, str]]]:
    """How to list the processes of the host ``zfs`` runs on: this host's ``/proc``, or
    the remote host's through one ssh command (``Zfs.processes_with_argument``)."""
    return processes_with_argument if zfs.remote is None else zfs.processes_with_argument


Action = tuple[str, Callable[[Zfs], None]]


def next_recovery_action(state: TargetState, keep_resumable: bool, *,
                         unmount_old: bool = True) -> Action | None:
    """The one step that moves an interrupted replacement forward (the table in design.md).

    Raises:
        ReceiveRefused: the temporary carries no encroot marker, or a verified
            one waits beside a mounted old tree and ``unmount_old`` is False.
    """
    target = DatasetName(state.target)
    temp = temp_name(target)
    verified = state.temp_verified
    olds = state.old_tops()
    if olds:
        return _recover_with_old(state, target, temp, verified is not None, olds[0][0])
    if state.temp:
        if keep_resumable and state.temp_resumable:
            return None
        if not state.temp_ours:
            marker = state.temp_marker
            why = getattr(marker, "reason", "it carries no encroot marker")
            raise ReceiveRefused(
                f"{temp} looks like encroot's temporary but is not encroot's ({why}); "
                f"encroot does not touch it. Inspect it, then remove or rename it by hand "
                f"(zfs destroy -r {shlex.quote(temp)}); nothing was changed")
        mounted = mounted_deepest_first(state.tree)
        if verified is not None and mounted:
            if not unmount_old:
                raise ReceiveRefused(
                    f"{target} is mounted and the verified new tree {temp} waits to replace "
                    f"it; `encroot receive --recover {shlex.quote(target)}` unmounts "
                    f"{target} and swaps it in; nothing was changed")
            return (f"unmount {target} for the swap with verified {temp}",
                    lambda z: _unmount(z, target, mounted))
        if verified is not None:
            aside = DatasetName(verified.keep_old or target + RECV_OLD_SUFFIX)
            return (f"swap in verified {temp}: move {target} aside to {aside}",
                    lambda z: _mark_and_rename(z, target, aside))
        return (f"destroy the unfinished temporary {temp}",
                lambda z: z.destroy(temp, recursive=True))
    for prop, _marker in state.target_markers():
        return (f"clear {prop} on {target}", lambda z, p=prop: z.inherit(target, p))
    return None


def _recover_with_old(state: TargetState, target: DatasetName, temp: DatasetName,
                      temp_verified: bool, old: DatasetName) -> Action:
    if not state.exists:
        if temp_verified:
            return (f"rename verified {temp} to {target}", lambda z: rename(z, temp, target))
        return (f"restore the old tree: rename {old} to {target}",
                lambda z: _rename_and_unmark(z, old, target))
    if not old.endswith(RECV_OLD_SUFFIX):
        return (f"keep the old tree as {old}", lambda z: z.inherit(old, RECV_REPLACED))
    return (f"destroy the replaced tree {old}", lambda z: z.destroy(old, recursive=True))


def rename(zfs: Zfs, source: str, target: str) -> None:
    """Rename and let ZFS remount what was mounted, so no file system stays mounted at
    the path of a name it no longer has (unmounted trees stay unmounted)."""
    zfs.rename(source, target, no_remount=False)


def _mark_and_rename(zfs: Zfs, target: DatasetName, aside: DatasetName) -> None:
    zfs.set(target, {RECV_REPLACED: dumps(ReceiveReplaced(target=target,
                                                          owner=Owner.current()))})
    rename(zfs, target, aside)


def _rename_and_unmark(zfs: Zfs, old: DatasetName, target: DatasetName) -> None:
    rename(zfs, old, target)
    zfs.inherit(target, RECV_REPLACED)


def _unmount(zfs: Zfs, target: str, names: Sequence[str]) -> None:
    unmount_for_swap(zfs, target, names)


def unmount_for_swap(zfs: Zfs, target: str, names: Sequence[str] | None = None) -> list[str]:
    """Unmount the old tree (``names``, else what is mounted now), deepest first.

    Returns what was unmounted.  If one cannot be unmounted (busy), those
    unmounted are mounted again and nothing else changes.

    Raises:
        SwapPending: names the reason; the verified new tree keeps waiting.
    """
    if names is None:
        names = mounted_deepest_first(get_tree(zfs, target))
    done: list[str] = []
    try:
        for name in names:
            zfs.unmount(name)
            done.append(name)
    except ZfsError as exc:
        reason = str(exc).strip()
        for name in reversed(done):
            try:
                zfs.mount(name)
            except ZfsError as again:
                reason += f"; and {name} could not be mounted again: {str(again).strip()}"
        raise SwapPending(target=target, waiting=temp_name(target), reason=reason) from exc
    return done
