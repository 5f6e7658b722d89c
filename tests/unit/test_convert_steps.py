"""Convert's steps carry the commands the executors run (issue 12, item 4).

A cutover plan shows every state-changing command the cutover will run,
but the pipelines' receives (the plan's transfers) and the claim program
that takes over the new tree: these tests run the plan, then compare.  The
scenarios and their fakes are test_convert_commands's.
"""

from __future__ import annotations

import json
import re

import pytest

from encroot.convert import ConvertRequest, convert, plan_conversion, recover
from encroot.convert.read import read_state
from encroot.convert.steps import ConvertAction, SwapAction
from encroot.convert.swap import next_action, run_step
from encroot.errors import InputError
from encroot.keys import Key
from encroot.names import DatasetName
from encroot.owned import Owner
from encroot.zfs import Command

from .test_convert_commands import (
    ENCRYPT,
    KEEP,
    _after_initial,
    _fixed_owner_and_clock,
    _killed_cutover,
    _zfs,
)
from .test_convert_run import HEX, TOP, tree

__all__ = ["_fixed_owner_and_clock"]  # the same owner and clock for plan and run


def _changes(calls: list[tuple[Command, bytes | None]], *, skip: tuple[str, ...] = ()
             ) -> list[tuple[str, ...]]:
    return [command.argv for command, _ in calls
            if command.mutates and command.argv[1] not in skip]


@pytest.mark.parametrize("keep_old", [None, KEEP])
def test_a_cutover_runs_exactly_the_commands_its_plan_shows(keep_old: DatasetName | None
                                                           ) -> None:
    fake = _after_initial()
    zfs, runner = _zfs(fake)
    request = ConvertRequest("encrypt", TOP, phase="cutover", keep_old=keep_old)
    (plan,) = plan_conversion(zfs, request, key_given=True)
    planned = [c.argv for step in plan.steps for c in step.commands]
    assert [s.action for s in plan.steps][:5] == [
        ConvertAction.UNMOUNT, ConvertAction.SNAPSHOT, ConvertAction.TRANSFER,
        ConvertAction.VERIFY, ConvertAction.MARK_VERIFIED]
    runner.calls.clear()
    convert(zfs, request, key=None)
    assert _changes(runner.calls, skip=("program", "receive")) == planned


def test_each_pipeline_is_the_planned_send_and_receive_plus_the_keys_pipe() -> None:
    fake = tree()
    zfs, runner = _zfs(fake)
    request = ConvertRequest("encrypt", TOP, keyformat="hex", phase="initial")
    (plan,) = plan_conversion(zfs, request, key_given=True)
    planned = [c.argv for t in plan.transfers for c in t.commands]
    runner.calls.clear()
    with Key.hex(HEX) as key:
        convert(zfs, request, key=key)
    ran = [c.argv for c, _ in runner.calls if c.argv[1] in ("send", "receive")
           and "-n" not in c.argv]
    keyed = plan.transfers[0]
    assert keyed.with_key and json.loads(keyed.receive_properties["encroot:convert"])
    key_options = ("-o", "keyformat=hex", "-o", "keylocation=file:///dev/fd/N")
    unpiped = [tuple(re.sub(r"/dev/fd/\d+", "/dev/fd/N", a) for a in argv) for argv in ran]
    assert unpiped[1] == (*planned[1][:-1], *key_options, planned[1][-1])
    assert unpiped[:1] + unpiped[2:] == planned[:1] + planned[2:]


def test_the_plans_json_carries_the_shell_lines_and_argv() -> None:
    zfs, _ = _zfs(_after_initial())
    (plan,) = plan_conversion(zfs, ConvertRequest("encrypt", TOP, phase="cutover"),
                              key_given=True)
    document = plan.to_json()
    rename = next(s for s in document["steps"] if s["action"] == "rename")
    assert rename["commands"][0].endswith(f"zfs rename '{TOP}' '{TOP}.encroot-convert-old'")
    assert rename["argv"][0][1:] == ["rename", TOP, f"{TOP}.encroot-convert-old"]
    send, receive = document["transfers"][0]["argv"]
    assert send[-1] == f"{TOP}@{plan.goal}" and receive[-1] == f"{TOP}.encroot-convert"


@pytest.mark.parametrize("kill_before", [4, 8, 10, 12])
def test_recovery_runs_the_commands_of_the_move_it_chose(kill_before: int) -> None:
    fake = _killed_cutover(kill_before)
    zfs, runner = _zfs(fake)
    move = next_action(ENCRYPT, read_state(zfs, ENCRYPT), undo=True, owner=Owner.current(),
                       commands=zfs.commands)
    assert move is not None
    planned = [c.argv for step in move.steps for c in step.commands]
    runner.calls.clear()
    report = recover(zfs, ENCRYPT)
    assert report.actions[0] == move.description
    assert _changes(runner.calls)[:len(planned)] == planned


def test_the_swap_refuses_a_phase_step() -> None:
    zfs, _ = _zfs(_after_initial())
    (plan,) = plan_conversion(zfs, ConvertRequest("encrypt", TOP, phase="cutover"),
                              key_given=True)
    snapshot = next(s for s in plan.steps if s.action is ConvertAction.SNAPSHOT)
    with pytest.raises(InputError):
        run_step(zfs, ENCRYPT, snapshot)
    assert {s.action for s in plan.steps} >= {SwapAction.RESTORE, SwapAction.HOLD,
                                               SwapAction.MOUNT, SwapAction.DESTROY_OLD,
                                               SwapAction.CLEAR}
