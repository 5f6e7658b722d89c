"""``Zfs`` on a remote host: connecting once, the version check, ssh's failures, transfers
between hosts (the argv, the key path) and the plan's shell lines."""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest

from encroot.errors import RemoteHostKey, RemoteZfsMissing, RemoteZfsTooOld
from encroot.keys import Key
from encroot.zfs import Command, SendSpec, Zfs
from encroot.zfs.masters import SshMasters
from encroot.zfs.testing import RecordingRunner, Responder

from .fakes import BINARIES

VERSION = "zfs-2.3.2-2~bpo12+2\nzfs-kmod-2.3.2-2~bpo12+2\n"


_OPENED: list[SshMasters] = []


@pytest.fixture(autouse=True)
def _close_masters() -> Iterator[None]:
    """Every test's masters are closed, their socket folder removed, even on failure."""
    yield
    while _OPENED:
        _OPENED.pop().close()


def _remote(respond: Responder | None = None, *, master: tuple[int, str] = (0, "")
            ) -> tuple[Zfs, RecordingRunner, list[list[str]], SshMasters]:
    opened: list[list[str]] = []

    def spawn(argv: list[str]) -> tuple[int, str]:
        opened.append(argv)
        return master if "ControlMaster=yes" in argv else (0, "")

    def answer(command: Command) -> tuple[int, str, str]:
        if command.argv[1:] == ("version",):
            return 0, VERSION, ""
        return (0, "", "") if respond is None else respond(command)

    runner = RecordingRunner(answer)
    masters = SshMasters(spawn=spawn)
    _OPENED.append(masters)
    zfs = Zfs(runner=runner, remote=masters.target("backup@newhost", "backup@newhost"),
              masters=masters)
    return zfs, runner, opened, masters


def test_connects_once_checks_the_version_then_runs_commands_over_ssh() -> None:
    zfs, runner, opened, masters = _remote()
    zfs.list_pools()
    zfs.exists("newtank/my data")
    assert len([a for a in opened if "ControlMaster=yes" in a]) == 1
    assert [c.argv for c, _ in runner.calls] == [
        ("zfs", "version"), ("zpool", "list", "-H", "-o", "name"),
        ("zfs", "list", "-H", "-o", "name", "-t", "all", "newtank/my data")]
    assert all(c.remote is not None and c.process_argv[0] == "ssh" for c, _ in runner.calls)
    masters.close()


def test_a_missing_zfs_and_an_old_one_are_one_line_naming_the_host() -> None:
    zfs, runner, _, masters = _remote()
    runner.respond = lambda c: (127, "", "sh: 1: zfs: not found\n")
    with pytest.raises(RemoteZfsMissing, match=r"^backup@newhost: zfs is not installed"):
        zfs.list_pools()
    zfs, runner, _, masters = _remote()
    runner.respond = lambda c: (0, "zfs-0.8.6-1\nzfs-kmod-0.8.6-1\n", "")
    with pytest.raises(RemoteZfsTooOld, match=r"^backup@newhost: OpenZFS 0\.8\.6-1 is too old"):
        zfs.list_pools()
    masters.close()


def test_a_host_key_refusal_at_the_master_runs_nothing() -> None:
    zfs, runner, _, masters = _remote(master=(255, "Host key verification failed.\n"))
    with pytest.raises(RemoteHostKey):
        zfs.list_pools()
    assert runner.calls == []
    masters.close()


def test_keys_go_on_the_ssh_stdin_never_in_argv() -> None:
    zfs, runner, _, masters = _remote()
    with Key.hex("ab" * 32) as key:
        zfs.load_key("newtank", key)
    command, stdin = runner.calls[-1]
    assert stdin is not None and b"ab" * 32 in stdin
    assert not any("ab" * 32 in arg for arg in command.process_argv)
    assert command.shell_line().endswith("< <secret>")
    masters.close()


def test_push_pipes_send_with_progress_flags_into_a_remote_receive() -> None:
    remote, runner, _, masters = _remote()
    local = Zfs(runner=runner, binaries=BINARIES)
    local.transfer(SendSpec("tank@s", replicate=True), "newtank/encroot-migrate",
                   destination=remote)
    sender, receiver = (c for c, _ in runner.calls[-2:])
    assert sender.argv == ("/sbin/zfs", "send", "-v", "-P", "-w", "-R", "tank@s")
    assert sender.remote is None
    assert receiver.argv == ("zfs", "receive", "-u", "-s", "newtank/encroot-migrate")
    assert receiver.remote is not None and receiver.process_argv[0] == "ssh"
    masters.close()


def test_pull_runs_the_send_over_ssh_and_receives_here() -> None:
    remote, runner, _, masters = _remote()
    local = Zfs(runner=runner, binaries=BINARIES)
    remote.transfer(SendSpec("tank@s", base="tank@r", replicate=True), "newtank/x",
                    destination=local)
    sender, receiver = (c for c, _ in runner.calls[-2:])
    assert sender.remote is not None and sender.argv[:4] == ("zfs", "send", "-v", "-P")
    assert receiver.remote is None and receiver.argv[0] == "/sbin/zfs"
    masters.close()


def test_the_verbose_log_shows_the_ssh_line() -> None:
    lines: list[str] = []
    remote, runner, _, masters = _remote()
    remote.log = lines.append
    remote.set("newtank", {"com.example:x": "a b"})
    assert runner.calls[-1][0].process_argv[0] == "ssh"
    words = shlex.split(next(line for line in lines if "com.example:x" in line))
    assert words[0] == "ssh" and words[-2] == "backup@newhost"
    assert shlex.split(words[-1])[-3:] == ["set", "com.example:x=a b", "newtank"]
    masters.close()
