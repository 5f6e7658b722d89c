"""The migration executor through the command layer: which zfs commands, in which order.

``tests/data/migrate-commands.json`` holds, for each scenario below, every command the
last operation of the scenario ran (reads included, a remote one as its ssh line; ``<
program HASH`` where a claim program was stdin, keys as ``< <secret>``), and its
outcome, first recorded with the executor from before migrate's steps carried their
commands (issue 12, item 4); re-recorded only on purpose since, each time by the commit
that cuts processes (issue 12, performance), whose message gives the counts before and
after.  The world is ``migrating.MigratingWorld``: decisions
only, never proof that ZFS works (the lab's tests are).
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Callable

import pytest

from encroot.keys import Key
from encroot.migrate import MigrateRequest, migrate
from encroot.names import DatasetName, PoolName
from encroot.owned import MIGRATE_MARKER, MigratePhase, Owner, dumps
from encroot.owned import owner as owner_module
from encroot.zfs import Zfs
from encroot.zfs.ssh import SshTarget
from encroot.zfs.testing import FaultInjector, Killed, RecordingRunner

from .fakes import BINARIES
from .migrating import MigratingWorld, dataset, snapshot
from .recorded import Recording, command_lines, outcome

HEX = "cd" * 32
FIXED = Owner(host="host", boot_id="boot", pid=1, start="1")  # this process, in the tests
NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
INTERRUPTED = "encroot-migrate-20270115-075900"
TOKEN = "1-a0-b1-c2"
SRC_HOST, DST_HOST = "oldhost", "backup@newhost"


def world(*, encrypted_destination: bool = True) -> MigratingWorld:
    """SRC ``src`` (hex key; data, data/a and vol inherit it, own has its own), @s1
    everywhere; DST the empty pool ``dst``, encrypted with its key in a file."""
    mount = "/encroot-test-absent/src"
    fake = MigratingWorld({
        "src": dataset(guid="1", encryptionroot="src", keylocation="prompt",
                       mountpoint=mount, compression="lz4"),
        "src/data": dataset(guid="2", mountpoint=mount + "/data", createtxg="2"),
        "src/data/a": dataset(guid="3", mountpoint=mount + "/data/a", createtxg="3"),
        "src/own": dataset(guid="4", encryptionroot="src/own", keylocation="prompt",
                           mountpoint=mount + "/own", createtxg="4"),
        "src/vol": dataset(guid="5", type="volume", mounted="-", createtxg="5"),
        **{f"{name}@s1": snapshot(100 + number, 6) for number, name in
           enumerate(("src", "src/data", "src/data/a", "src/own", "src/vol"))},
        "dst": dataset(guid="9", encryptionroot="dst" if encrypted_destination else "-",
                       encryption="aes-256-gcm" if encrypted_destination else "off",
                       keystatus="available" if encrypted_destination else "-",
                       keylocation="file:///keys/dst.key" if encrypted_destination
                       else "none", mountpoint="/dst", available=str(1 << 40)),
    }, local={"src": {"compression", "mountpoint"}, "dst": set()})
    return fake


def request(phase: str = "all", **extra: object) -> MigrateRequest:
    options: dict[str, object] = {"root_data": "skip", **extra}
    return MigrateRequest(DatasetName("src"), PoolName("dst"), phase=phase,
                          **options)  # type: ignore[arg-type]


def sides(fake: MigratingWorld, wanted: MigrateRequest, kill_before: int | None = None,
          fail: dict[int, str] | None = None) -> tuple[Zfs, Zfs, RecordingRunner]:
    """SRC's and DST's ``Zfs`` (over ssh for a remote side), both answered by ``fake``;
    through a ``FaultInjector`` when a kill or a failure is asked for."""
    runner = RecordingRunner(fake)
    fake.runner = runner
    inner = runner if kill_before is None and not fail else \
        FaultInjector(runner, kill_before=kill_before, fail=fail or {})

    def side(host: str | None) -> Zfs:
        if host is None:
            return Zfs(runner=inner, binaries=BINARIES)
        return Zfs(runner=inner, remote=SshTarget(host, host))

    source = side(wanted.source_host)
    destination = source if wanted.source_host == wanted.destination_host else \
        side(wanted.destination_host)
    return source, destination, runner


def run_migrate(fake: MigratingWorld, wanted: MigrateRequest, *,
                kill_before: int | None = None, take_over: str | None = None,
                fail: dict[int, str] | None = None) -> RecordingRunner:
    source, destination, runner = sides(fake, wanted, kill_before, fail)
    with Key.hex(HEX) as key:
        migrate(source, wanted, source_key=key if "cutover" in wanted.phases else None,
                destination_zfs=destination, take_over=take_over)
    return runner


def after_initial(**extra: object) -> MigratingWorld:
    fake = world()
    run_migrate(fake, request("initial", **extra))
    return fake


def killed_cutover() -> MigratingWorld:
    """Killed before its first move (its 7th state-changing command): the cutover marker
    is on, one key re-parented."""
    fake = after_initial()
    with pytest.raises(Killed):
        run_migrate(fake, request("cutover"), kill_before=7)
    assert MIGRATE_MARKER in fake.datasets["dst"]
    assert "dst/encroot-migrate/data" in fake.datasets  # the kill came before the first move
    return fake


def resumable() -> MigratingWorld:
    """An initial phase cut in its first stream: SRC has the goal, DST a partial staging."""
    fake = world()
    fake.sender = ("send", "-w", "-R", f"src@{INTERRUPTED}")
    fake._snapshot_all(f"src@{INTERRUPTED}")
    fake.datasets["dst/encroot-migrate"] = dataset(
        guid="50", encryptionroot="dst/encroot-migrate", keystatus="unavailable",
        mounted="no", mountpoint="/dst/encroot-migrate", receive_resume_token=TOKEN)
    fake.resumes[TOKEN] = ("send", "-w", "src@s1")
    return fake


def held_by_a_dead_phase() -> MigratingWorld:
    """An initial phase of a dead encroot (same host, another boot): marker and snapshot."""
    fake = world()
    fake._snapshot_all(f"src@{INTERRUPTED}")
    dead = Owner(host="host", boot_id="an earlier boot", pid=99, start="5")
    fake.datasets["dst"][MIGRATE_MARKER] = dumps(MigratePhase(source="src", phase="initial",
                                                              owner=dead))
    fake.local["dst"].add(MIGRATE_MARKER)
    return fake


Operation = Callable[[MigratingWorld], RecordingRunner]
# name -> (the world before, the operation whose commands are recorded)
SCENARIOS: dict[str, tuple[Callable[[], MigratingWorld], Operation]] = {
    "initial": (world, lambda fake: run_migrate(fake, request("initial"))),
    "catch-up": (after_initial, lambda fake: run_migrate(fake, request("catch-up"))),
    "cutover": (after_initial, lambda fake: run_migrate(fake, request("cutover"))),
    "cutover-root-as-dataset": (
        lambda: after_initial(root_data="dataset:rootdata"),
        lambda fake: run_migrate(fake, request("cutover", root_data="dataset:rootdata"))),
    "all-phases-unencrypted-destination": (
        lambda: world(encrypted_destination=False),
        lambda fake: run_migrate(fake, request(allow_unencrypted_destination=True))),
    "all-phases-remote-destination": (
        world, lambda fake: run_migrate(fake, request(destination_host=DST_HOST))),
    "initial-remote-source": (
        world, lambda fake: run_migrate(fake, request("initial", source_host=SRC_HOST))),
    "initial-resumed": (resumable, lambda fake: run_migrate(fake, request("initial"))),
    "initial-after-a-dead-owner": (held_by_a_dead_phase,
                                   lambda fake: run_migrate(fake, request("initial"))),
    "cutover-interrupted-goes-on": (killed_cutover,
                                    lambda fake: run_migrate(fake, request("cutover"))),
}


def _fixed(patch: pytest.MonkeyPatch) -> None:
    # Owner.current() is FIXED (the executor's default_factory holds the unpatched method)
    patch.setattr(owner_module, "host_id", lambda: FIXED.host)
    patch.setattr(owner_module, "boot_id", lambda: FIXED.boot_id)
    patch.setattr(owner_module, "process_start", lambda pid: FIXED.start)
    patch.setattr(os, "getpid", lambda: FIXED.pid)
    patch.setattr(time, "time", lambda: NOW)
    patch.setattr(tempfile, "mkdtemp", lambda prefix="": f"/tmp/{prefix}fixed")
    patch.setattr(secrets, "token_hex", lambda count=None: "0123456789ab")


@pytest.fixture(autouse=True)
def _fixed_owner_clock_and_names(monkeypatch: pytest.MonkeyPatch) -> None:
    _fixed(monkeypatch)


def run(name: str) -> tuple[MigratingWorld, list[str]]:
    before, operation = SCENARIOS[name]
    fake = before()
    done = outcome(lambda: operation(fake))
    assert fake.runner is not None  # the operation's (``sides``), even when it raised
    return fake, [*command_lines(fake.runner), done]


RECORDED = Recording("migrate-commands.json", SCENARIOS, lambda name: run(name)[1], _fixed)


@pytest.mark.parametrize("name", RECORDED.names())
def test_the_zfs_commands_are_those_recorded_before_steps_carried_commands(name: str
                                                                          ) -> None:
    RECORDED.check(name)


def test_every_scenario_ends_as_a_migration_should() -> None:
    """The scenarios do what their names say (so the recording is worth keeping)."""
    for name in RECORDED.names():
        fake, lines = run(name)
        assert lines[-1] == "done", (name, lines[-5:])
        if "cutover" in name or name.startswith("all-phases"):
            assert "dst/data/a" in fake.datasets and "dst/encroot-migrate" not in fake.datasets
            assert MIGRATE_MARKER not in fake.datasets["dst"]
            assert fake.datasets["dst/own"]["encryptionroot"] == "dst/own"
        if name in ("cutover", "all-phases-remote-destination"):
            assert fake.datasets["dst/data/a"]["encryptionroot"] == "dst"
    remote = run("all-phases-remote-destination")[1]
    assert any(line.startswith("ssh ") and "zpool export dst" in line for line in remote)


if __name__ == "__main__":
    RECORDED.write()
