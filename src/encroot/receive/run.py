"""Executing a receive plan: receive into the temporary, verify, swap by renames.

``execute`` runs each step's own commands (``Step.commands``, built by the
planner with the markers' owner) through the ``Zfs`` it is given; it
dispatches on the step's ``ReceiveAction`` with a ``match`` whose default
branch is ``assert_never``, so mypy rejects an action without code.  Only
UNMOUNT and MOUNT decide their commands from what ZFS shows when they run
(see ``Step``).  A dry run never gets here: it ends with the plan.

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

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, assert_never

from ..errors import EncrootError, InputError, SwapPending, ZfsError
from ..names import DatasetName, in_tree
from ..owned import RECV_REPLACED, RECV_VERIFIED
from ..records import field, record
from ..zfs import Zfs
from .plan import Expected, ReceivePlan, encryption_of
from .recover import RecoveryReport, recover, unmount_for_swap
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
from .steps import ReceiveAction, Step, mounted_deepest_first

__all__ = ["ReceiveResult", "execute", "verify"]

@record
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
            "kept_old": self.plan.kept_old,
            "recovery": self.recovery.actions if self.recovery else [],
            "plan": self.plan.to_json(),
        }


@record
class _Context:
    zfs: Zfs
    request: ReceiveRequest
    plan: ReceivePlan
    stream_fd: int
    say: Callable[[str], None]
    unmounted: list[str] = field(default_factory=list)
    marked_verified: bool = False
    marked_replaced: bool = False
    zfs_output: str = ""
    verified: dict[str, Props] = field(default_factory=dict)
    mounted_target: list[str] | None = None  # the old tree's, read with verification


def execute(zfs: Zfs, request: ReceiveRequest, plan: ReceivePlan, stream_fd: int, *,
            say: Callable[[str], None] = lambda line: None) -> ReceiveResult:
    """Run the plan's steps; on failure before the swap, undo; after it, recover.

    The plan must come from ``plan_receive(..., commands=zfs.commands)``: its
    commands run as they are, so they must name this ``Zfs``'s binary.

    Raises:
        InputError: a dry run (it ends with the plan), or the plan's commands
            name another zfs binary than ``zfs`` runs (nothing was changed).
        ZfsError: a zfs command failed (after undo or recovery; the message says which).
        VerificationFailed: the received data did not match the stream.
    """
    if request.dry_run:
        raise InputError("a dry run ends with the plan; execute() runs a plan for real")
    program = zfs.commands.program
    if any(command.argv[0] != program for command in plan.commands):
        raise InputError(f"the plan's commands run another zfs than {program!r}: plan with "
                         "plan_receive(..., commands=zfs.commands)")
    context = _Context(zfs, request, plan, stream_fd, say)
    swapped = False
    try:
        for group in _groups(plan.steps):
            for step in group:
                say(f"{step.action.value}: {step.dataset}"
                    + (f" ({step.detail})" if step.detail else ""))
            swapped = swapped or group[0].action is ReceiveAction.RENAME
            if len(group) == 1:
                _run_step(context, group[0])
            else:
                first, second = group
                zfs.concurrently(partial(_run_step, context, first),
                                 partial(_run_step, context, second))
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


# Neighbouring steps that run at the same time: each pair's two changes touch two
# datasets, and an interruption after either one alone leaves a state recovery ends the
# same way as today's order (docs/design.md, "What an interruption leaves").
_TOGETHER = {(ReceiveAction.MARK_VERIFIED, ReceiveAction.MARK_REPLACED),
             (ReceiveAction.DESTROY_OLD, ReceiveAction.CLEAR_VERIFIED),
             (ReceiveAction.KEEP_OLD, ReceiveAction.CLEAR_VERIFIED)}


def _groups(steps: Sequence[Step]) -> list[tuple[Step, ...]]:
    """The plan's steps in order, each pair of ``_TOGETHER`` as one group."""
    groups: list[tuple[Step, ...]] = []
    index = 0
    while index < len(steps):
        pair = tuple(steps[index:index + 2])
        if len(pair) == 2 and (pair[0].action, pair[1].action) in _TOGETHER:
            groups.append(pair)
            index += 2
        else:
            groups.append((steps[index],))
            index += 1
    return groups


def _as_final(verified: dict[str, Props], plan: ReceivePlan) -> dict[str, Props]:
    """What verification read under the receive name, renamed to the target's names."""
    def moved(name: str) -> str:
        if in_tree(name, plan.receive_into):
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
    if context.marked_replaced:  # the old tree stays at its name: it is not replaced
        try:
            context.zfs.inherit(context.plan.target, RECV_REPLACED)
        except ZfsError as exc:
            context.say(f"could not clear {RECV_REPLACED} on {context.plan.target}: {exc}")
    if context.marked_verified:
        if isinstance(error, ZfsError):
            raise SwapPending(target=context.plan.target, waiting=temp,
                              reason=str(error).strip()) from error
        return
    props = get_props(context.zfs, [temp]).get(temp)
    marker = local_marker(props, RECV_VERIFIED)
    mine = getattr(marker, "owner", None) == context.plan.owner
    keep_partial = context.request.resumable and resumable(props)
    if props is not None and mine and not keep_partial:
        context.zfs.destroy(temp, recursive=True)


def _run_step(context: _Context, step: Step) -> None:
    """The code for each action; mypy checks that every ``ReceiveAction`` has a case."""
    match step.action:
        case ReceiveAction.RECEIVE:
            (command,) = step.commands  # the stream is its stdin
            result = context.zfs.execute(command, stdin_fd=context.stream_fd)
            context.zfs_output += result.stdout
        case ReceiveAction.VERIFY:
            _do_verify(context, step)
        case ReceiveAction.MARK_VERIFIED:
            _run_commands(context, step)
            context.marked_verified = True
        case ReceiveAction.UNMOUNT:
            # what was mounted when the receive ended (the old tree stayed in service), as
            # verification read it; read now if it could not
            context.unmounted = unmount_for_swap(context.zfs, step.dataset,
                                                 context.mounted_target)
        case ReceiveAction.MARK_REPLACED:
            _run_commands(context, step)
            context.marked_replaced = True
        case (ReceiveAction.RENAME | ReceiveAction.DESTROY_OLD | ReceiveAction.KEEP_OLD
              | ReceiveAction.CLEAR_VERIFIED):
            _run_commands(context, step)
        case ReceiveAction.MOUNT:
            _do_mount(context, step)
        case _:
            assert_never(step.action)


def _run_commands(context: _Context, step: Step) -> None:
    for command in step.commands:
        context.zfs.execute(command)


def _do_verify(context: _Context, step: Step) -> None:
    """Verify the received tree; for a replacement, read the old tree in the same
    ``zfs get`` (what is mounted there is what the swap unmounts)."""
    target = context.plan.target
    also = (target,) if context.plan.mode == "replace" and target != step.dataset else ()
    problems, table = verify(context.zfs, step.dataset, context.plan, also=also)
    context.verified = {name: props for name, props in table.items()
                        if in_tree(name, step.dataset)}
    old = {name: props for name, props in table.items() if also and in_tree(name, target)}
    if old:
        context.mounted_target = mounted_deepest_first(old)
    if problems:
        raise VerificationFailed(f"received data under {step.dataset!r} does not match the "
                                 f"stream: {'; '.join(problems)}")


def verify(zfs: Zfs, top: str, plan: ReceivePlan, *, also: Sequence[str] = ()
           ) -> tuple[list[str], dict[str, Props]]:
    """Compare what ZFS shows under ``top`` with what the stream promised.

    Returns the problems found and the properties read: one ``zfs get`` of
    ``top``'s tree and of the trees named in ``also`` (read alone when one of
    those is gone).
    """
    table = get_tree(zfs, top, *also)
    if also and not table:
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
