"""The commands each receive step carries: exact argv, shell lines that paste correctly.

Plans are built from the real sample stream heads with ``ZfsCommands()``
(argv[0] ``zfs``) and a fixed owner, so every marker is known here.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from encroot.cli.receive import _plan_lines
from encroot.names import DatasetName
from encroot.owned import (
    RECV_REPLACED,
    RECV_VERIFIED,
    Owner,
    ReceiveInProgress,
    ReceiveReplaced,
    ReceiveVerified,
    dumps,
)
from encroot.receive import (
    ReceiveAction,
    ReceivePlan,
    ReceiveRequest,
    TargetState,
    plan_receive,
)
from encroot.stream import StreamInfo, parse_header
from encroot.zfs import ZfsCommands

from .fakes import filesystem

DATA = Path(__file__).parent.parent / "data" / "streams"
TARGET = "dst/my data"
TEMP = f"{TARGET}.encroot-recv"
OLD = f"{TARGET}.encroot-old"
OWNER = Owner(host="host-id", boot_id="boot-id", pid=4242, start="99")
NOTE = "it's \"quoted\" & $HOME"  # a user property value with both quotes and a variable


def stream(name: str, **changes: object) -> StreamInfo:
    info = parse_header((DATA / f"{name}.zstream").read_bytes())
    return replace(info, **changes)  # type: ignore[arg-type]


def state(tree: dict[str, dict[str, str]], **changes: object) -> TargetState:
    current = TargetState(TARGET, "enabled", filesystem(), tree, {}, {})
    return replace(current, **changes)  # type: ignore[arg-type]


def request(**options: object) -> ReceiveRequest:
    defaults: dict[str, object] = {"target": DatasetName(TARGET), "force": True,
                                   "no_mount": True, "allow_encryption_change": True}
    return ReceiveRequest(**{**defaults, **options})  # type: ignore[arg-type]


def plan(req: ReceiveRequest, current: TargetState, info: StreamInfo) -> ReceivePlan:
    return plan_receive(req, current, info, owner=OWNER, commands=ZfsCommands())


def lines(steps: ReceivePlan) -> list[tuple[str, list[list[str]]]]:
    return [(s.action.value, [list(c.argv) for c in s.commands]) for s in steps.steps]


def test_a_replacement_carries_every_command_with_its_markers() -> None:
    done = plan(request(properties={"com.example:note": NOTE}),
                state({TARGET: filesystem(mounted="yes"),
                       f"{TARGET}/child": filesystem(mounted="yes"),
                       f"{TARGET}/child/grandchild": filesystem()}),
                stream("raw-replication"))
    assert done.mode == "replace"
    receiving = dumps(ReceiveInProgress(target=TARGET, owner=OWNER))
    verified = dumps(ReceiveVerified(guid="7869961104295662211", keep_old=None, owner=OWNER))
    replaced = dumps(ReceiveReplaced(target=TARGET, owner=OWNER))
    assert lines(done) == [
        ("receive", [["zfs", "receive", "-u", "-o", f"com.example:note={NOTE}",
                      "-o", f"{RECV_VERIFIED}={receiving}", TEMP]]),
        ("verify", []),
        ("mark-verified", [["zfs", "set", f"{RECV_VERIFIED}={verified}", TEMP]]),
        ("mark-replaced", [["zfs", "set", f"{RECV_REPLACED}={replaced}", TARGET]]),
        ("unmount", [["zfs", "unmount", f"{TARGET}/child"], ["zfs", "unmount", TARGET]]),
        ("rename", [["zfs", "rename", TARGET, OLD]]),
        ("rename", [["zfs", "rename", TEMP, TARGET]]),
        ("destroy-old", [["zfs", "destroy", "-r", OLD]]),
        ("clear-verified", [["zfs", "inherit", RECV_VERIFIED, TARGET]]),
    ]
    assert done.commands[0].shell_line() == (
        "zfs receive -u -o 'com.example:note=it'\"'\"'s \"quoted\" & $HOME' "
        f"-o '{RECV_VERIFIED}={receiving}' 'dst/my data.encroot-recv'")


def test_every_shell_line_splits_back_into_its_argv() -> None:
    done = plan(request(properties={"com.example:note": NOTE}, snapshot="my snap",
                        keep_old=DatasetName("dst/kept: a.b_c-d"), no_mount=False),
                state({TARGET: filesystem()}), stream("plain-full"))
    assert done.commands
    for command in done.commands:
        assert shlex.split(command.shell_line()) == list(command.argv)
    assert done.commands[0].argv[-1] == f"{TEMP}@my snap"


def test_keep_old_keeps_and_without_u_the_new_tree_is_mounted() -> None:
    kept = plan(request(keep_old=DatasetName("dst/kept one"), no_mount=False),
                state({TARGET: filesystem()}), stream("plain-full"))
    assert lines(kept)[-3:] == [
        ("keep-old", [["zfs", "inherit", RECV_REPLACED, "dst/kept one"]]),
        ("clear-verified", [["zfs", "inherit", RECV_VERIFIED, TARGET]]),
        ("mount", [["zfs", "mount", TARGET]])]
    assert kept.kept_old == "dst/kept one"
    assert ("rename", [["zfs", "rename", TARGET, "dst/kept one"]]) in lines(kept)
    raw = plan(request(no_mount=False), state({TARGET: filesystem()}), stream("raw-full"))
    assert lines(raw)[-1] == ("mount", [])  # a raw receive leaves its key unloaded
    assert raw.kept_old is None


def test_create_incremental_and_resume_receive_into_the_target_as_named() -> None:
    created = plan(request(), state({}), stream("raw-full"))
    assert lines(created) == [("receive", [["zfs", "receive", "-F", "-u", TARGET]]),
                              ("verify", [])]
    derived = request(target=DatasetName(TARGET), name_from_stream="-d").for_stream(
        stream("raw-full"))
    below = plan(derived, replace(state({}), target=derived.target), stream("raw-full"))
    assert lines(below)[0] == ("receive", [["zfs", "receive", "-F", "-u", "-d", TARGET]])
    incremental = plan(request(verbose=True),
                       state({TARGET: filesystem(encryption="aes-256-gcm")}),
                       stream("raw-incremental"))
    assert lines(incremental) == [("receive", [["zfs", "receive", "-F", "-u", "-v",
                                                TARGET]])]
    resumed = plan(request(resumable=True),
                   state({TARGET: filesystem(receive_resume_token="1-abc")}),
                   stream("raw-full", resuming=True))
    assert resumed.mode == "resume"
    assert lines(resumed) == [("receive", [["zfs", "receive", "-F", "-u", "-s", TARGET]])]


def test_a_dry_runs_plan_shows_the_receive_a_real_run_makes() -> None:
    created = plan(request(dry_run=True), state({}), stream("raw-full"))
    assert "-n" not in created.commands[0].argv


def test_the_json_plan_keeps_its_keys_and_adds_commands_and_argv() -> None:
    done = plan(request(), state({TARGET: filesystem()}), stream("raw-full"))
    as_json = json.loads(json.dumps(done.to_json()))
    rename = as_json["steps"][5]
    assert rename["action"] == "rename" and rename["dataset"] == TARGET
    assert rename["detail"] == OLD
    assert rename["commands"] == ["zfs rename 'dst/my data' 'dst/my data.encroot-old'"]
    assert rename["argv"] == [["zfs", "rename", TARGET, OLD]]
    assert as_json["steps"][1]["commands"] == [] == as_json["steps"][1]["argv"]
    assert set(as_json) >= {"mode", "target", "receive_into", "old", "stream", "checks",
                            "notes", "steps", "old_encryption"}


def test_the_plan_text_lists_each_steps_commands_under_it() -> None:
    done = plan(request(), state({TARGET: filesystem(mounted="yes")}), stream("raw-full"))
    text = _plan_lines(done)
    unmount = text.index("  5. unmount dst/my data  (the old tree, deepest first, for the "
                         "swap only: dst/my data)")
    assert text[unmount + 1] == "       zfs unmount 'dst/my data'"
    assert "       zfs destroy -r 'dst/my data.encroot-old'" in text
    assert text.count("       " + done.commands[0].shell_line()) == 1


@pytest.mark.parametrize("action", list(ReceiveAction))
def test_every_action_prints_as_its_old_name(action: ReceiveAction) -> None:
    assert action.value == action.name.lower().replace("_", "-")
