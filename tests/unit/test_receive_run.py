"""The receive executor through the command layer: which zfs commands, in which order.

``tests/data/receive-commands.json`` holds, for each scenario below, every
command the receive ran (reads included, ``< stream`` where the stream was
its stdin, the marker's owner as ``<OWNER>``) as recorded before steps
carried their commands (issue 12, item 4).  The lab tests check what these
commands do on real OpenZFS; this file pins that they stay the same commands,
that the executor runs the plan's own commands, that every action has code,
and that a dry run ends with the plan.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field, replace

import pytest

from encroot.errors import EncrootError
from encroot.names import DatasetName
from encroot.owned import RECV_VERIFIED, Owner, ReceiveInProgress, dumps
from encroot.receive import (
    ReceiveAction,
    ReceiveRequest,
    Step,
    execute,
    plan_receive,
    read_state,
    receive_stream,
)
from encroot.receive.run import _Context, _run_step
from encroot.stream import parse_header
from encroot.zfs.testing import RecordingRunner

from .fakes import ReceivingWorld, filesystem, make_zfs
from .recorded import DATA, Recording

SPACES = "dst/my data"
ODD = "dst/a:b.c-d_e f"  # every character ZFS allows in a name besides letters and digits
NOTE = {"com.example:note": "it's \"quoted\" & $HOME"}
# dead: of this host (an owner of another host holds until --take-over), an earlier boot
DEAD = Owner(host=Owner.current().host, boot_id="an earlier boot", pid=1, start="1")
RESUMING_BIT = 1 << 20


def stream_bytes(name: str, *, resuming: bool = False) -> bytes:
    data = bytearray((DATA / "streams" / f"{name}.zstream").read_bytes())
    if resuming:  # drr_versioninfo (offset 16) carries the feature flags shifted by 2
        versioninfo = struct.unpack_from("<Q", data, 16)[0] | (RESUMING_BIT << 2)
        struct.pack_into("<Q", data, 16, versioninfo)
    return bytes(data)


def snap(guid: int | str = 1) -> dict[str, str]:
    return {"type": "snapshot", "userrefs": "0", "clones": "", "guid": str(guid)}


@dataclass
class Scenario:
    stream: str
    datasets: dict[str, dict[str, str]]
    options: dict[str, object]
    resuming: bool = False
    local: dict[str, set[str]] = field(default_factory=dict)
    busy: set[str] = field(default_factory=set)
    wrong_guid: bool = False


def _raw(**props: str) -> dict[str, str]:
    return filesystem(**{"encryption": "aes-256-gcm", "keystatus": "available", **props})


SCENARIOS = {
    "replace-mounted": Scenario("raw-full", {
        "dst": filesystem(), SPACES: filesystem(mounted="yes"), f"{SPACES}@a": snap()},
        {"target": SPACES, "no_mount": True}),
    "replace-keep-old-and-mount": Scenario("plain-full", {
        "dst": filesystem(), ODD: filesystem(), f"{ODD}@a": snap()},
        {"target": ODD, "keep_old": "dst/kept one", "resumable": True, "verbose": True,
         "properties": {"compression": "lz4", **NOTE}, "excluded": ("atime",)}),
    "replace-package": Scenario("raw-replication", {
        "dst": filesystem(), SPACES: filesystem(mounted="yes"),
        f"{SPACES}/child": filesystem(mounted="yes"),
        f"{SPACES}/child/grandchild": filesystem(mounted="yes")},
        {"target": SPACES, "no_mount": True}),
    "replace-busy": Scenario("raw-replication", {
        "dst": filesystem(), SPACES: filesystem(mounted="yes"),
        f"{SPACES}/child": filesystem(mounted="yes"),
        f"{SPACES}/child/grandchild": filesystem(mounted="yes")},
        {"target": SPACES, "no_mount": True}, busy={SPACES}),
    "replace-snapshot-name": Scenario("raw-full", {
        "dst": filesystem(), SPACES: filesystem()},
        {"target": SPACES, "snapshot": "mine", "no_mount": True}),
    "replace-verification-fails": Scenario("raw-full", {
        "dst": filesystem(), SPACES: filesystem()},
        {"target": SPACES, "no_mount": True}, wrong_guid=True),
    "create-d": Scenario("raw-full", {"dst": filesystem(), SPACES: filesystem()},
                         {"target": SPACES, "name_from_stream": "-d", "no_mount": True}),
    "create-mounted": Scenario("plain-full", {"dst": filesystem()},
                               {"target": ODD, "properties": NOTE}),
    "incremental": Scenario("raw-incremental", {
        "dst": filesystem(), SPACES: _raw(encryptionroot=SPACES),
        f"{SPACES}@A": snap(5764923641516663347)}, {"target": SPACES, "no_mount": True}),
    "resume-target": Scenario("raw-full", {
        "dst": filesystem(), SPACES: _raw(receive_resume_token="1-abc")},
        {"target": SPACES, "no_mount": True, "resumable": True}, resuming=True),
    "resume-temporary": Scenario("raw-full", {
        "dst": filesystem(), SPACES: filesystem(),
        f"{SPACES}.encroot-recv": {
            **_raw(encryptionroot=f"{SPACES}.encroot-recv", keystatus="unavailable",
                   receive_resume_token="1-abc"),
            RECV_VERIFIED: dumps(ReceiveInProgress(target=SPACES, owner=DEAD))}},
        {"target": SPACES, "no_mount": True, "resumable": True}, resuming=True,
        local={f"{SPACES}.encroot-recv": {RECV_VERIFIED}}),
}


def _request(options: dict[str, object]) -> ReceiveRequest:
    values = dict(options)
    values["target"] = DatasetName(str(values["target"]))
    if "keep_old" in values:
        values["keep_old"] = DatasetName(str(values["keep_old"]))
    return ReceiveRequest(force=True, allow_encryption_change=True,
                          **values)  # type: ignore[arg-type]


def run(name: str) -> tuple[ReceivingWorld, RecordingRunner, list[str]]:
    """Run one scenario through ``receive_stream``; the commands as comparable lines."""
    case = SCENARIOS[name]
    data = stream_bytes(case.stream, resuming=case.resuming)
    world = ReceivingWorld(json.loads(json.dumps(case.datasets)),
                           {k: set(v) for k, v in case.local.items()},
                           stream=parse_header(data), busy=set(case.busy),
                           wrong_guid=case.wrong_guid)
    zfs, runner = make_zfs(world)
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    outcome = "done"
    try:
        receive_stream(zfs, _request(case.options), read)
    except EncrootError as exc:
        outcome = type(exc).__name__
    finally:
        os.close(read)
    owner = json.dumps(Owner.current().to_json(), separators=(",", ":"), sort_keys=True)
    lines = [command.shell_line().replace(owner, "<OWNER>")
             + (" < stream" if fd is not None else "")
             for (command, _), fd in zip(runner.calls, runner.stdin_fds, strict=True)]
    return world, runner, [*lines, outcome]


RECORDED = Recording("receive-commands.json", SCENARIOS, lambda name: run(name)[2])


@pytest.mark.parametrize("name", RECORDED.names())
def test_the_zfs_commands_are_those_recorded_before_steps_carried_commands(name: str
                                                                          ) -> None:
    RECORDED.check(name)


if __name__ == "__main__":
    RECORDED.write()


# -- the executor runs the plan's own commands -------------------------------------------

def _mutating(runner: RecordingRunner) -> list[tuple[str, ...]]:
    return [command.argv for command, _ in runner.calls if command.mutates]


def test_a_replacement_runs_exactly_the_plans_commands_in_order() -> None:
    case = SCENARIOS["replace-package"]
    data = stream_bytes(case.stream)
    world = ReceivingWorld(json.loads(json.dumps(case.datasets)), stream=parse_header(data))
    zfs, runner = make_zfs(world)
    request = _request(case.options)
    current = read_state(zfs, request.target)
    plan = plan_receive(request, current, parse_header(data), commands=zfs.commands)
    assert [c.argv[1] for c in plan.commands] == [
        "receive", "set", "set", "unmount", "unmount", "unmount", "rename", "rename",
        "destroy", "inherit"]
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    try:
        execute(zfs, request, plan, read)
    finally:
        os.close(read)
    assert _mutating(runner) == [command.argv for command in plan.commands]
    receive = next(i for i, (c, _) in enumerate(runner.calls) if c.argv[1] == "receive")
    assert runner.calls[receive][0] is plan.commands[0]  # the planned object itself
    assert runner.stdin_fds[receive] == read


def _step_context(action: ReceiveAction) -> tuple[_Context, Step]:
    """A context and a step of ``action`` that the step's code runs through cleanly."""
    world = ReceivingWorld({"dst": filesystem(), "dst/x": filesystem()},
                           stream=parse_header(stream_bytes("raw-full")))
    zfs, _ = make_zfs(world)
    request = _request({"target": "dst/x", "no_mount": True})
    plan = plan_receive(request, read_state(zfs, request.target),
                        parse_header(stream_bytes("raw-full")), commands=zfs.commands)
    plan = replace(plan, expected=())
    commands = {ReceiveAction.RECEIVE: (zfs.commands.receive("dst/y", options=["-u"]),),
                ReceiveAction.RENAME: (zfs.commands.rename("dst/x", "dst/z"),)}
    step = Step(action, "dst/x", "", commands.get(action, ()))
    return _Context(zfs, request, plan, stream_fd=0, say=lambda line: None), step


@pytest.mark.parametrize("action", list(ReceiveAction))
def test_every_action_has_code_in_the_executor(action: ReceiveAction) -> None:
    """mypy proves the match complete (assert_never); this runs each case once."""
    context, step = _step_context(action)
    _run_step(context, step)


def test_an_action_without_a_case_stops_at_assert_never() -> None:
    context, step = _step_context(ReceiveAction.VERIFY)
    with pytest.raises(AssertionError):
        _run_step(context, replace(step, action="verify"))  # type: ignore[arg-type]


# -- a dry run ends with the plan ------------------------------------------------------

def test_a_dry_run_returns_the_plan_and_runs_nothing_that_changes_zfs() -> None:
    case = SCENARIOS["replace-mounted"]
    data = stream_bytes(case.stream)
    world = ReceivingWorld(json.loads(json.dumps(case.datasets)), stream=parse_header(data))
    zfs, runner = make_zfs(world)
    request = _request({**case.options, "dry_run": True})
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    try:
        outcome = receive_stream(zfs, request, read)
    finally:
        os.close(read)
    assert outcome.plan is not None and outcome.result is None
    assert _mutating(runner) == []  # the layer has nothing to fake
    assert [c.argv[1] for c in outcome.plan.commands][:2] == ["receive", "set"]
    with pytest.raises(ValueError, match="a dry run ends with the plan"):
        execute(zfs, request, outcome.plan, 0)


def test_a_plan_built_for_another_zfs_binary_is_refused() -> None:
    case = SCENARIOS["replace-mounted"]
    data = stream_bytes(case.stream)
    world = ReceivingWorld(json.loads(json.dumps(case.datasets)), stream=parse_header(data))
    zfs, runner = make_zfs(world)
    request = _request(case.options)
    plan = plan_receive(request, read_state(zfs, request.target), parse_header(data))
    with pytest.raises(ValueError, match="another zfs than '/sbin/zfs'"):
        execute(zfs, request, plan, 0)
    assert _mutating(runner) == []


# -- reads --------------------------------------------------------------------------------

def _feature_reads(runner: RecordingRunner) -> int:
    return sum(c.argv[1:3] == ("get", "-H") and "feature@encryption" in c.argv
               for c, _ in runner.calls)


def test_an_encrypted_dataset_beside_the_target_shows_the_feature_active_without_zpool_get(
        ) -> None:
    world = ReceivingWorld({"dst": filesystem(), "dst/x": _raw(), "dst/x@a": snap()})
    zfs, runner = make_zfs(world)
    assert read_state(zfs, DatasetName("dst/x")).pool_encryption_feature == "active"
    assert _feature_reads(runner) == 0


def test_among_unencrypted_datasets_the_pool_feature_is_read() -> None:
    world = ReceivingWorld({"dst": filesystem(), "dst/x": filesystem()})
    zfs, runner = make_zfs(world)
    read_state(zfs, DatasetName("dst/x"))
    assert _feature_reads(runner) == 1
