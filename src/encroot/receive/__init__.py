"""``encroot receive``: ``zfs receive``, plus a safe way across the encryption boundary.

Without ``allow_encryption_change`` a receive is plain ``zfs receive`` with
the same options (same results, same errors).  With it, a *full* stream may
replace an existing target whose encryption state differs, which stock
OpenZFS refuses.  encroot receives into a sibling temporary, verifies it,
and swaps by renames; the old data is destroyed only after the new data is
complete and verified.  docs/design.md lays out the steps, the names and
markers encroot owns (``encroot.owned``), and how every interrupted state is
recovered.

Parts: ``state`` (the request, reading ZFS in a few bulk calls), ``plan``
(pure), ``steps`` (each step's action and zfs commands, pure), ``run``
(executing the steps' commands), ``recover`` (finishing or undoing an
interrupted run; refuses while the run's owner is alive).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import InputError
from ..records import record
from ..stream import StreamInfo
from ..zfs import Result, Zfs
from .plan import Expected, ReceivePlan, expected_datasets, plan_receive
from .recover import (
    Orphan,
    RecoveryReport,
    next_recovery_action,
    orphan_receives,
    process_scan,
    recover,
    wait_for_orphans,
)
from .run import ReceiveResult, execute, verify
from .state import (
    ReceiveRefused,
    ReceiveRequest,
    TargetState,
    VerificationFailed,
    read_state,
    temp_name,
)
from .steps import ReceiveAction, Step
from .target import derived_target, split_target

__all__ = [
    "Expected",
    "Orphan",
    "Outcome",
    "ReceiveAction",
    "ReceivePlan",
    "ReceiveRefused",
    "ReceiveRequest",
    "ReceiveResult",
    "RecoveryReport",
    "Step",
    "TargetState",
    "VerificationFailed",
    "derived_target",
    "execute",
    "expected_datasets",
    "next_recovery_action",
    "orphan_receives",
    "pass_options",
    "plan_receive",
    "process_scan",
    "read_state",
    "receive_stream",
    "recover",
    "run_plain",
    "split_target",
    "temp_name",
    "verify",
    "wait_for_orphans",
]


def run_plain(zfs: Zfs, request: ReceiveRequest, stream_fd: int) -> Result:
    """Plain ``zfs receive`` with the request's options; the result is ZFS's own."""
    return zfs.receive(request.zfs_target(), stream_fd, options=request.zfs_flags(),
                       properties=request.properties, excluded=request.excluded, check=False)


def pass_options(values: Sequence[str]) -> dict[str, str]:
    """Parse ``-o prop=value`` options into a mapping (validation happens in the layer).

    Raises:
        InputError: an option without ``=`` or without a property name.
    """
    result: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise InputError(f"-o {value!r}: expected property=value", subject="-o")
        result[name] = text
    return result


@record
class Outcome:
    """The end of ``receive_stream``: exactly one of the fields is set.

    ``plain``: the result of a plain ``zfs receive`` (no encryption change
    asked); ``plan``: a dry run's plan; ``result``: what a receive did.
    """

    plain: Result | None = None
    plan: ReceivePlan | None = None
    result: ReceiveResult | None = None
    recovery: RecoveryReport | None = None


def receive_stream(zfs: Zfs, request: ReceiveRequest, stream_fd: int, *,
                   say: Callable[[str], None] = lambda line: None,
                   take_over: str | None = None) -> Outcome:
    """``encroot receive``: plain ``zfs receive``, or the safe cross-boundary replacement.

    A dry run (``request.dry_run``) ends with the plan: nothing runs that ZFS
    would have to fake.  ``zfs`` may run on another host (``Zfs(remote=...)``):
    every read and step runs there, the stream is relayed from ``stream_fd``
    into ``ssh HOST zfs receive``, and the markers name this process.
    ``take_over``: the host id of a marker's owner on another host that the
    caller says is gone.

    Raises:
        StreamError: the stream's header is unreadable (nothing was changed).
        ReceiveRefused: a precondition failed, or an encroot of another host holds the
            target's state and ``take_over`` does not name it (nothing was changed).
        OwnerAlive: another encroot still works on this target, or a zfs receive that a
            dead encroot started still runs after a minute (nothing was changed).
        VerificationFailed, ZfsError: the receive failed; the old target is intact.
    """
    if not request.allow_encryption_change:
        return Outcome(plain=run_plain(zfs, request, stream_fd))
    from ..stream import peek_stream

    peeked = peek_stream(stream_fd)
    try:
        say(f"stream: {_describe_stream(peeked.info)} (header read by {peeked.method})")
        request = _resolve_target(zfs, request, peeked.info, say)
        wait_for_orphans(request.target, say=say, scan=process_scan(zfs), take_over=take_over)
        state = read_state(zfs, request.target)
        state.refuse_live_owner(take_over)
        recovery = None
        if state.needs_recovery(resuming=peeked.info.resuming) and not request.dry_run:
            recovery = recover(zfs, request.target, keep_resumable=peeked.info.resuming,
                               unmount_old=request.no_mount, take_over=take_over, say=say)
            state = read_state(zfs, request.target)
        keep_old_exists = request.keep_old is not None and zfs.exists(request.keep_old)
        plan = plan_receive(request, state, peeked.info, keep_old_exists=keep_old_exists,
                            commands=zfs.commands)
        if request.dry_run:
            return Outcome(plan=plan, recovery=recovery)
        result = execute(zfs, request, plan, peeked.fd, say=say)
        result.recovery = recovery
        return Outcome(result=result, recovery=recovery)
    finally:
        peeked.finish()


def _resolve_target(zfs: Zfs, request: ReceiveRequest, info: StreamInfo,
                    say: Callable[[str], None]) -> ReceiveRequest:
    """With -d/-e, the target zfs would derive from the stream (its destination must exist).

    Raises:
        ReceiveRefused: the destination does not exist (nothing was changed).
    """
    resolved = request.for_stream(info)
    if resolved.destination is None or resolved is request:
        return resolved
    if not zfs.exists(resolved.destination):
        raise ReceiveRefused(f"{request.name_from_stream} {resolved.destination}: specified fs "
                             f"({resolved.destination}) does not exist (-d and -e receive "
                             "below an existing file system); nothing was changed")
    say(f"target: {resolved.target} ({request.name_from_stream} {resolved.destination}, "
        f"named by the stream's {info.toname})")
    return resolved


def _describe_stream(info: StreamInfo) -> str:
    kind = "replication package" if info.package else "stream"
    return (f"{'full' if info.full else 'incremental'} {'raw ' if info.raw else ''}{kind} "
            f"of {info.toname}")

