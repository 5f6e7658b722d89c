"""Executing a receive plan: receive into the temporary, verify, swap by renames.

Every marker names this process (``encroot.owned.Owner``) from the first
change on: the temporary is created by ``zfs receive -o
encroot:recv-verified=<receiving marker>``, and OpenZFS sets ``-o``
properties right after ``dmu_recv_begin()`` created the dataset and before
``dmu_recv_stream()`` reads the first record (``zfs_ioc_recv_impl()`` in
``module/zfs/zfs_ioctl.c``, 2.1 to 2.4; user properties are not among the
delayed ones), so the marker is visible while the stream still flows and
stays on a partial ``-s`` receive.  Recovery in another process refuses
while this process is alive; the undo path here destroys only a temporary
whose marker names this process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import EncrootError, SwapPending, ZfsError
from ..names import DatasetName
from ..owned import (
    RECV_REPLACED,
    RECV_VERIFIED,
    Owner,
    ReceiveInProgress,
    ReceiveReplaced,
    ReceiveVerified,
    dumps,
)
from ..stream import StreamInfo
from ..zfs import Result, Zfs
from .plan import Expected, ReceivePlan, Step, encryption_of
from .recover import RecoveryReport, recover, rename, unmount_for_swap
from .state import (
    Props,
    ReceiveRequest,
    VerificationFailed,
    get_props,
    get_tree,
    local_marker,
    resumable,
    temp_name,
)

__all__ = ["ReceiveResult", "execute", "verify"]

@dataclass
class ReceiveResult:
    """What a receive did, for humans (``lines``) and machines (``to_json``)."""

    plan: ReceivePlan
    new_encryption: Props | None = None
    snapshots: list[str] = field(default_factory=list)
    recovery: RecoveryReport | None = None
    zfs_output: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.plan.target,
            "mode": self.plan.mode,
            "old_encryption": self.plan.old_encryption,
            "new_encryption": self.new_encryption,
            "snapshots": self.snapshots,
            "kept_old": self.plan.old if self.plan.steps and any(
                s.action == "keep-old" for s in self.plan.steps) else None,
            "recovery": self.recovery.actions if self.recovery else [],
            "plan": self.plan.to_json(),
        }


@dataclass
class _Context:
    zfs: Zfs
    request: ReceiveRequest
    plan: ReceivePlan
    stream_fd: int
    say: Callable[[str], None]
    owner: Owner = field(default_factory=Owner.current)
    unmounted: list[str] = field(default_factory=list)
    marked_verified: bool = False
    zfs_output: str = ""
    verified: dict[str, Props] = field(default_factory=dict)


def execute(zfs: Zfs, request: ReceiveRequest, plan: ReceivePlan, stream_fd: int, *,
            say: Callable[[str], None] = lambda line: None) -> ReceiveResult:
    """Run the plan's steps; on failure before the swap, undo; after it, recover.

    Raises:
        ZfsError: a zfs command failed (after undo or recovery; the message says which).
        VerificationFailed: the received data did not match the stream.
    """
    context = _Context(zfs, request, plan, stream_fd, say)
    swapped = False
    try:
        for step in plan.steps:
            say(f"{step.action}: {step.dataset}" + (f" ({step.detail})" if step.detail else ""))
            _ACTIONS[step.action](context, step)
            swapped = swapped or step.action == "mark-replaced"
    except BaseException as exc:
        if plan.mode == "replace" and not swapped:
            _undo_before_swap(context, exc)
        elif plan.mode == "replace":
            _recover_after_failure(zfs, DatasetName(plan.target), say)
        raise
    final = (_as_final(context.verified, plan) if context.verified
             else get_tree(zfs, plan.target))
    return ReceiveResult(plan, encryption_of(final.get(plan.target)),
                         sorted(n for n in final if "@" in n), zfs_output=context.zfs_output)


def _as_final(verified: dict[str, Props], plan: ReceivePlan) -> dict[str, Props]:
    """What verification read under the receive name, renamed to the target's names."""
    def moved(name: str) -> str:
        if name == plan.receive_into or name.startswith(plan.receive_into + "/") or \
                name.startswith(plan.receive_into + "@"):
            return plan.target + name[len(plan.receive_into):]
        return name
    return {moved(name): {key: moved(value) if key == "encryptionroot" else value
                           for key, value in props.items()}
            for name, props in verified.items()}


def _recover_after_failure(zfs: Zfs, target: DatasetName, say: Callable[[str], None]) -> None:
    """After the swap began, finish or undo it; report, never mask the original error."""
    try:
        report = recover(zfs, target, say=say)
    except EncrootError as exc:
        say(f"recovery did not finish ({exc}); run `encroot receive --recover {target}`")
        return
    say(f"recovered after the failure: {'; '.join(report.actions) or 'nothing to do'}")


def _undo_before_swap(context: _Context, error: BaseException) -> None:
    """The old tree is untouched: mount what we unmounted; drop an unverified temporary.

    A verified temporary is kept (it is complete; ``--recover`` swaps it in),
    and an ordinary failure then becomes ``SwapPending``, which says so.
    """
    temp = temp_name(context.plan.target)
    for name in reversed(context.unmounted):
        try:
            context.zfs.mount(name)
        except ZfsError as exc:
            context.say(f"could not mount {name} again: {exc}")
    if context.marked_verified:
        if isinstance(error, ZfsError):
            raise SwapPending(target=context.plan.target, waiting=temp,
                              reason=str(error).strip()) from error
        return
    props = get_props(context.zfs, [temp]).get(temp)
    marker = local_marker(props, RECV_VERIFIED)
    mine = getattr(marker, "owner", None) == context.owner
    keep_partial = context.request.resumable and resumable(props)
    if props is not None and mine and not keep_partial:
        context.zfs.destroy(temp, recursive=True)


def _do_unmount(context: _Context, step: Step) -> None:
    """Unmount the old tree as it is mounted now (it stayed in service while receiving)."""
    context.unmounted = unmount_for_swap(context.zfs, step.dataset)


def _do_receive(context: _Context, step: Step) -> None:
    request = context.request
    properties = dict(request.properties)
    if context.plan.mode == "replace":  # into the temporary, by its explicit name
        options = ["-u"] + (["-s"] if request.resumable else []) + (
            ["-v"] if request.verbose else [])
        into = request.zfs_target(step.dataset)
        owned = ReceiveInProgress(target=context.plan.target, owner=context.owner)
        properties[RECV_VERIFIED] = dumps(owned)  # ownership from the dataset's creation on
    else:  # into the target itself, named as the caller did (-d/-e, FS@SNAP)
        options, into = request.zfs_flags(), request.zfs_target()
    result: Result = context.zfs.receive(into, context.stream_fd, options=options,
                                         properties=properties,
                                         excluded=request.excluded)
    context.zfs_output += result.stdout


def _do_verify(context: _Context, step: Step) -> None:
    problems, context.verified = verify(context.zfs, step.dataset, context.plan)
    if problems:
        raise VerificationFailed(f"received data under {step.dataset!r} does not match the "
                                 f"stream: {'; '.join(problems)}")


def verify(zfs: Zfs, top: str, plan: ReceivePlan) -> tuple[list[str], dict[str, Props]]:
    """Compare what ZFS shows under ``top`` with what the stream promised.

    Returns the problems found and the properties read (one ``zfs get``).
    """
    table = get_tree(zfs, top)
    problems = []
    for expected in plan.expected:
        problems += _verify_one(table, expected, top, plan.parent_encryption)
    return problems, table


def _verify_one(table: dict[str, Props], expected: Expected, top: str,
                parent_encryption: str) -> list[str]:
    name = expected.name_under(top)
    if name not in table:
        return [f"{name} is missing"]
    problems = []
    for snap, guid in expected.snapshots.items():
        got = table.get(f"{name}@{snap}", {}).get("guid")
        if got != str(guid):
            problems.append(f"{name}@{snap} has GUID {got}, the stream says {guid}")
    props = table[name]
    if expected.own_encryption_root:
        if props.get("encryptionroot") != name:
            problems.append(f"{name} has encryptionroot {props.get('encryptionroot')}, "
                            "expected itself")
        if props.get("keystatus") != "unavailable":
            problems.append(f"{name} keystatus is {props.get('keystatus')}, expected "
                            "unavailable after a raw receive")
    if expected.encrypted and props.get("encryption") in (None, "off"):
        problems.append(f"{name} is not encrypted, the raw stream is")
    if expected.encrypted is None and expected.relative == "" and not expected.own_encryption_root:
        if (props.get("encryption") == "off") != (parent_encryption == "off"):
            problems.append(f"{name} encryption is {props.get('encryption')}, its parent's is "
                            f"{parent_encryption}")
    return problems


def _do_mark_verified(context: _Context, step: Step) -> None:
    keep = context.request.keep_old
    marker = ReceiveVerified(guid=_stream_guid(context.plan.stream),
                             keep_old=None if keep is None else str(keep), owner=context.owner)
    context.zfs.set(step.dataset, {RECV_VERIFIED: dumps(marker)})
    context.marked_verified = True


def _stream_guid(stream: StreamInfo) -> str:
    if not stream.package:
        return str(stream.toguid)
    top = stream.datasets[0] if stream.datasets else None
    snaps = {s.name: s.guid for s in top.snapshots} if top else {}
    return str(snaps.get(stream.tosnap or "", 0))


def _do_mark_replaced(context: _Context, step: Step) -> None:
    marker = ReceiveReplaced(target=context.plan.target, owner=context.owner)
    context.zfs.set(step.dataset, {RECV_REPLACED: dumps(marker)})


def _do_rename(context: _Context, step: Step) -> None:
    rename(context.zfs, step.dataset, step.detail)


def _do_destroy_old(context: _Context, step: Step) -> None:
    context.zfs.destroy(step.dataset, recursive=True)


def _do_keep_old(context: _Context, step: Step) -> None:
    context.zfs.inherit(step.dataset, RECV_REPLACED)


def _do_clear_verified(context: _Context, step: Step) -> None:
    context.zfs.inherit(step.dataset, RECV_VERIFIED)


def _do_mount(context: _Context, step: Step) -> None:
    table = {name: {p: v.value for p, v in props.items()} for name, props in
             context.zfs.get([step.dataset], ("canmount", "mountpoint", "keystatus", "mounted"),
                             recursive=True, types=("filesystem",)).datasets.items()}
    for name, props in table.items():
        mountable = (props.get("canmount") == "on" and props.get("mounted") == "no"
                     and props.get("mountpoint") not in ("none", "legacy")
                     and props.get("keystatus") in ("available", "-"))
        if mountable:
            context.zfs.mount(name)


_ACTIONS: dict[str, Callable[[_Context, Step], None]] = {
    "unmount": _do_unmount,
    "receive": _do_receive,
    "verify": _do_verify,
    "mark-verified": _do_mark_verified,
    "mark-replaced": _do_mark_replaced,
    "rename": _do_rename,
    "destroy-old": _do_destroy_old,
    "keep-old": _do_keep_old,
    "clear-verified": _do_clear_verified,
    "mount": _do_mount,
}


