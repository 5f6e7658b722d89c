"""The rotation executor and recovery through the command layer: which zfs commands, in order.

``tests/data/rotate-commands.json`` holds, for each scenario below, every command
``rotate_keys`` or ``recover`` ran (reads included; ``< <secret>`` where a key was
stdin, ``< program HASH`` where a channel program was, HASH covering its text
with the journal's start time made constant) and the outcome, as recorded with
the executor from before steps carried their commands (issue 12, item 4), with one
deliberate change: when a change-key of a batch fails, the commit step runs its
planned command (``-m`` sized for the planned program) with the abort program,
where the old executor rebuilt the command and asked for 4 bytes more memory
(``journal-one-fails``).  This
file pins that they stay the same commands, that the executor runs the plan's
own commands, that every action has code, and how a killed or failed rotation
is recovered (``FaultInjector``).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import pytest

from encroot.errors import (
    InputError,
    PendingRotation,
    RotationFailed,
    RotationRefused,
    ZfsError,
)
from encroot.keys import Key
from encroot.names import DatasetName
from encroot.owned import ROTATION_MARKER, Owner
from encroot.owned import owner as owner_module
from encroot.rotate import (
    ChangeKeyRequest,
    RotationAction,
    execute,
    plan_for,
    plan_recovery,
    recover,
    rotate_keys,
)
from encroot.rotate.run import _Run, _run_step
from encroot.zfs import Runner, Zfs
from encroot.zfs.testing import FaultInjector, Killed, RecordingRunner

from .fakes import BINARIES
from .recorded import Recording, command_lines, outcome, with_stdin
from .rotating import RotatingWorld, encrypted

SPACES, OTHER, CHILD = "tank/my data", "pool2/a:b.c-d_e f", "tank/p/c"
NEW, OLD = "ab" * 32, "cd" * 32
EPOCH = {"com.example:epoch": "it's \"2\" & $HOME"}
FIXED = Owner(host="host", boot_id="boot", pid=1, start="1")  # dead: nobody holds it
JOURNAL_ID = "0123456789abcdef"


@dataclass
class Scenario:
    datasets: dict[str, dict[str, str]]
    requests: Callable[[], list[ChangeKeyRequest]]
    native: bool = False
    fail: dict[str, str] = field(default_factory=dict)
    recover: str | None = None  # recover this dataset instead of rotating
    local: dict[str, set[str]] = field(default_factory=dict)


def _pending(name: str, **changed: str) -> tuple[dict[str, str], set[str]]:
    """A dataset with the journal of an interrupted hex-to-passphrase rotation."""
    marker = json.dumps({"format": 2, "op": "rotate", "role": "journal",
                         "owner": FIXED.to_json(),
                         "data": {"id": "j1", "started": "T", "inherit": False,
                                  "old_keyformat": "hex", "old_pbkdf2salt": "0",
                                  "old_pbkdf2iters": "0", "old_encryptionroot": name,
                                  "new_keyformat": "passphrase", "new_pbkdf2iters": None,
                                  "new_keylocation": None}},
                        separators=(",", ":"), sort_keys=True)
    props = {**encrypted(name, **changed), ROTATION_MARKER: marker,
             "encroot:com.example:epoch": "2"}
    return props, {ROTATION_MARKER, "encroot:com.example:epoch"}


_COMMITTED, _COMMITTED_LOCAL = _pending(SPACES, keyformat="passphrase")
_ABORTED, _ABORTED_LOCAL = _pending(SPACES)


def _key(hex_text: str = NEW) -> Key:
    return Key.hex(hex_text)


SCENARIOS = {
    "journal-batch-two-pools": Scenario(
        {"tank": encrypted("tank"), SPACES: encrypted(SPACES), "pool2": encrypted("pool2"),
         OTHER: encrypted(OTHER, keystatus="unavailable")},
        lambda: [ChangeKeyRequest(DatasetName(SPACES), _key(), EPOCH),
                 ChangeKeyRequest(DatasetName(OTHER), _key(), EPOCH, load_key=_key(OLD))]),
    "journal-one-fails": Scenario(
        {"tank": encrypted("tank"), SPACES: encrypted(SPACES), "tank/b": encrypted("tank/b")},
        lambda: [ChangeKeyRequest(DatasetName(SPACES), _key(), EPOCH),
                 ChangeKeyRequest(DatasetName("tank/b"), _key(), EPOCH)],
        fail={"tank/b": "Key change error: Permission denied."}),
    "journal-inherit": Scenario(
        {"tank": encrypted("tank"), "tank/p": encrypted("tank/p", keyformat="passphrase"),
         CHILD: encrypted(CHILD)},
        lambda: [ChangeKeyRequest(DatasetName(CHILD), None, EPOCH, inherit=True)]),
    "journal-file-keylocation": Scenario(
        {"tank": encrypted("tank"), SPACES: encrypted(SPACES)},
        lambda: [ChangeKeyRequest(DatasetName(SPACES), None, EPOCH,
                                  keylocation="file:///etc/keys/my key")]),
    "native": Scenario(
        {"tank": encrypted("tank"), SPACES: encrypted(SPACES)},
        lambda: [ChangeKeyRequest(DatasetName(SPACES), _key(), EPOCH)], native=True),
    "plain-passphrase": Scenario(
        {"tank": encrypted("tank"), SPACES: encrypted(SPACES)},
        lambda: [ChangeKeyRequest(DatasetName(SPACES), Key.passphrase("correct horse"),
                                  pbkdf2iters=200000)]),
    "pending-journal-then-rotation": Scenario(
        {"tank": encrypted("tank"), SPACES: _COMMITTED},
        lambda: [ChangeKeyRequest(DatasetName(SPACES), _key(), EPOCH)],
        local={SPACES: _COMMITTED_LOCAL}),
    "recover-commit": Scenario({"tank": encrypted("tank"), SPACES: _COMMITTED},
                               lambda: [], recover=SPACES, local={SPACES: _COMMITTED_LOCAL}),
    "recover-abort": Scenario({"tank": encrypted("tank"), SPACES: _ABORTED},
                              lambda: [], recover=SPACES, local={SPACES: _ABORTED_LOCAL}),
}


def _fixed(patch: pytest.MonkeyPatch) -> None:
    patch.setattr(Owner, "current", classmethod(lambda cls: FIXED))
    patch.setattr(owner_module, "host_id", lambda: FIXED.host)  # this host, another boot
    patch.setattr(secrets, "token_hex", lambda n=8: JOURNAL_ID)


@pytest.fixture(autouse=True)
def _fixed_owner_and_id(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _fixed(monkeypatch)
    yield


def world_for(name: str) -> tuple[RotatingWorld, RecordingRunner]:
    case = SCENARIOS[name]
    world = RotatingWorld(json.loads(json.dumps(case.datasets)),
                          {k: set(v) for k, v in case.local.items()},
                          native=case.native, fail=dict(case.fail), initial_key=OLD.encode())
    runner = RecordingRunner(world)
    world.runner = runner
    return world, runner


def zfs_on(runner: Runner) -> Zfs:
    return Zfs(runner=runner, binaries=BINARIES)


def perform(name: str, zfs: Zfs) -> str:
    """Run one scenario's rotation or recovery; its outcome (an error's class name)."""
    case = SCENARIOS[name]
    requests = case.requests()
    try:
        return outcome(lambda: recover(zfs, case.recover) if case.recover is not None
                       else rotate_keys(zfs, requests))
    finally:
        for request in requests:
            for key in (request.key, request.load_key):
                if key is not None:
                    key.close()


def _line(command_line: str, stdin: bytes | None, secret: bool) -> str:
    return with_stdin(command_line, stdin, secret, lambda program: re.sub(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<T>", program))  # the journal's start


def run(name: str) -> tuple[RotatingWorld, RecordingRunner, list[str]]:
    world, runner = world_for(name)
    done = perform(name, zfs_on(runner))
    return world, runner, [*command_lines(runner, _line), done]


RECORDED = Recording("rotate-commands.json", SCENARIOS, lambda name: run(name)[2], _fixed)


@pytest.mark.parametrize("name", RECORDED.names())
def test_the_zfs_commands_are_those_recorded_before_steps_carried_commands(name: str
                                                                          ) -> None:
    RECORDED.check(name)


if __name__ == "__main__":
    RECORDED.write()


# -- the executor runs the plan's own commands -------------------------------------------

def test_a_batch_runs_exactly_the_plans_commands_and_programs_in_order() -> None:
    world, runner = world_for("journal-batch-two-pools")
    zfs = zfs_on(runner)
    requests = SCENARIOS["journal-batch-two-pools"].requests()
    plan = plan_for(zfs, requests)
    assert {step.action for step in plan.steps} == set(RotationAction)  # every action
    planned = [(c, step.program or None) for step in plan.steps for c in step.commands]
    before = len(runner.calls)
    assert [r.ok for r in execute(zfs, plan, requests)] == [True, True]
    ran = [(c, stdin) for c, stdin in runner.calls[before:] if c.mutates]
    assert [c for c, _ in ran] == [c for c, _ in planned]
    assert all(got is want for (got, _), (want, _) in zip(ran, planned, strict=True))
    programs = [stdin for (_, stdin), (_, p) in zip(ran, planned, strict=True) if p]
    assert programs == [p.encode() for _, p in planned if p]
    assert world.key_of(SPACES) == world.key_of(OTHER) == NEW.encode()


def test_an_action_without_a_case_stops_at_assert_never() -> None:
    _, runner = world_for("native")
    zfs = zfs_on(runner)
    plan = plan_for(zfs, SCENARIOS["native"].requests())
    step = replace(plan.steps[0], action="change-key")  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        _run_step(_Run(zfs, plan, {}, lambda line: None), step)


def test_a_plan_built_for_another_zfs_binary_is_refused_before_anything_runs() -> None:
    _, runner = world_for("native")
    zfs = zfs_on(runner)
    requests = SCENARIOS["native"].requests()
    plan = plan_for(zfs, requests)
    elsewhere = Zfs(runner=runner, binaries=replace(BINARIES, zfs="/usr/local/sbin/zfs"))
    before = len(runner.calls)
    with pytest.raises(InputError, match="another zfs"):
        execute(elsewhere, plan, requests)
    assert runner.calls[before:] == []


def test_a_dry_run_plans_against_a_pending_journal_and_changes_nothing() -> None:
    world, runner = world_for("pending-journal-then-rotation")
    requests = SCENARIOS["pending-journal-then-rotation"].requests()
    with pytest.raises(RotationRefused, match="a key rotation is pending"):
        plan_for(zfs_on(runner), requests, recover_pending=False)
    assert [c for c, _ in runner.calls if c.mutates] == [] and world.changes == []
    plan = plan_recovery(zfs_on(runner), SPACES)
    assert plan.action == "committed" and [s.action for s in plan.steps] == [
        RotationAction.COMMIT_JOURNAL]
    assert [c for c, _ in runner.calls if c.mutates] == []


# -- interrupted and failing rotations, through the fault injector ---------------------------

BATCH_CHANGES = 7  # load-key, two intents, two change-keys, two commits


def _settled(world: RotatingWorld, name: str) -> str:
    """"rotated" (new key and value) or "untouched" (old key, no value); no journal left."""
    props = world.datasets[name]
    assert not any(p.startswith("encroot:") for p in props), props
    if world.key_of(name) == NEW.encode() and props.get("com.example:epoch") == EPOCH[
            "com.example:epoch"]:
        return "rotated"
    assert world.key_of(name) == OLD.encode() and "com.example:epoch" not in props, props
    return "untouched"


@pytest.mark.parametrize("kill_before", range(1, BATCH_CHANGES + 1))
def test_a_batch_killed_at_any_step_is_recovered_to_rotated_or_untouched(kill_before: int
                                                                         ) -> None:
    world, runner = world_for("journal-batch-two-pools")
    injector = FaultInjector(runner, kill_before=kill_before)
    with pytest.raises(Killed):
        perform("journal-batch-two-pools", zfs_on(injector))
    assert injector.changes == kill_before - 1
    for name in (SPACES, OTHER):
        with _key() as new:  # the key the rotation was installing decides
            recover(zfs_on(runner), name, new_key=new)
    states = {name: _settled(world, name) for name in (SPACES, OTHER)}
    changed = kill_before > 4  # the first change-key is the 4th state-changing command
    assert states[SPACES] == ("rotated" if changed else "untouched")
    assert states[OTHER] == ("rotated" if kill_before > 5 else "untouched")


def test_after_a_kill_the_next_change_key_asks_for_the_key_that_decides() -> None:
    """Same format, no history: only a key tells whether the change-key ran; the next
    operation says so and changes nothing (then ``recover --new-key-file`` decides)."""
    world, runner = world_for("journal-batch-two-pools")
    with pytest.raises(Killed):
        perform("journal-batch-two-pools", zfs_on(FaultInjector(runner, kill_before=6)))
    changes = list(world.changes)
    with _key() as new, pytest.raises(PendingRotation, match="--new-key-file"):
        rotate_keys(zfs_on(runner), [ChangeKeyRequest(DatasetName(SPACES), new, EPOCH)])
    assert world.changes == changes


def test_a_failing_change_key_aborts_its_journal_and_the_batch_goes_on() -> None:
    world, runner = world_for("journal-batch-two-pools")
    message = "Key change error: Permission denied."
    with pytest.raises(RotationFailed, match="Permission denied") as failed:
        rotate_keys(zfs_on(FaultInjector(runner, fail={5: message})),
                    SCENARIOS["journal-batch-two-pools"].requests())
    assert [r.ok for r in failed.value.results] == [True, False]
    assert _settled(world, SPACES) == "rotated" and _settled(world, OTHER) == "untouched"


def test_a_failing_journal_write_stops_the_batch_before_any_key_changes() -> None:
    world, runner = world_for("journal-batch-two-pools")
    with pytest.raises(ZfsError, match="out of space"):
        rotate_keys(zfs_on(FaultInjector(runner, fail={2: "out of space"})),
                    SCENARIOS["journal-batch-two-pools"].requests())
    assert not any(argv[0] == "change-key" for argv in world.changes)
    assert _settled(world, SPACES) == _settled(world, OTHER) == "untouched"


@pytest.mark.parametrize("scenario", ["recover-commit", "recover-abort"])
def test_a_recovery_killed_before_its_program_is_simply_run_again(scenario: str) -> None:
    world, runner = world_for(scenario)
    with pytest.raises(Killed):
        recover(zfs_on(FaultInjector(runner, kill_before=1)), SPACES)
    assert ROTATION_MARKER in world.datasets[SPACES]  # nothing changed
    result = recover(zfs_on(runner), SPACES)
    assert result.action == {"recover-commit": "committed", "recover-abort": "aborted"}[scenario]
    assert ROTATION_MARKER not in world.datasets[SPACES]
    assert world.datasets[SPACES].get("com.example:epoch") == (
        "2" if scenario == "recover-commit" else None)
