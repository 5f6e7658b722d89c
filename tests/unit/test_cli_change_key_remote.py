"""``encroot change-key [USER@]HOST:DATASET``: the drop-in to that host's zfs (after one
``zfs version`` and the pending-rotation read there), ``--ssh-option`` taken out as
change-key's getopt reads the line, and ssh's terminal for a user at one."""

from __future__ import annotations

import os
import shlex
import shutil
import sys

import pytest

import encroot.cli.rotate as cli_rotate
from encroot.cli import main
from encroot.cli.common import Exit
from encroot.cli.dropin import HandOver, drop_in, hand_over
from encroot.errors import RotationRefused
from encroot.hosts import Location
from encroot.keys import Key
from encroot.names import DatasetName
from encroot.rotate import ChangeKeyRequest, rotate_keys
from encroot.zfs import Command, Zfs
from encroot.zfs.masters import SshMasters
from encroot.zfs.ssh import SshTarget
from encroot.zfs.testing import RecordingRunner, Replaced

from .rotating import RotatingWorld, encrypted

NAS = Location("tank/x", "nas", "root")
MARKER_READ = ("zfs", "get", "-p", "-H", "-o", "name,property,value,source",
               "encroot:rotation", "tank/x")


@pytest.mark.parametrize(("argv", "args", "options"), [
    (["change-key", "-l", "-o", "keyformat=hex", "root@nas:tank/x"],
     ("-l", "-o", "keyformat=hex", "tank/x"), ()),
    (["change-key", "--ssh-option", "-F", "--ssh-option", "/c f", "-i", "root@nas:tank/x"],
     ("-i", "tank/x"), ("-F", "/c f")),
    (["change-key", "root@nas:tank/x", "--ssh-opt=-oPort=2"], ("tank/x",), ("-oPort=2",)),
    # change-key's -x takes no value (receive's does): the ssh option after it is taken
    (["change-key", "-x", "--ssh-option", "-4", "root@nas:tank/x"], ("-x", "tank/x"), ("-4",)),
    # -o takes one: '--ssh-option' is its value, zfs's to refuse
    (["change-key", "-o", "--ssh-option", "root@nas:tank/x"],
     ("-o", "--ssh-option", "tank/x"), ()),
])
def test_a_remote_dataset_goes_to_that_hosts_zfs(argv: list[str], args: tuple[str, ...],
                                                 options: tuple[str, ...]) -> None:
    handover = drop_in(argv)
    assert handover == HandOver("change-key", args, ("tank/x",), NAS, options)


@pytest.mark.parametrize("argv", [
    ["change-key", "--ssh-option", "-4", "tank/x"],              # encroot's parser refuses it
    ["change-key", "-o", "oxide:epoch=2", "nas:tank/x"],         # an addition
    ["change-key", "--key-file", "k", "nas:tank/x"],
    ["change-key", "-i", "nas:tank/x", "nas:tank/y"],            # a batch
])
def test_additions_and_local_ssh_options_go_to_encroots_parser(argv: list[str]) -> None:
    assert drop_in(argv) is None


def test_an_escaped_local_name_reaches_zfs_and_the_marker_read_without_its_escape() -> None:
    assert drop_in(["change-key", "-l", "./tank/a:b"]) == HandOver(
        "change-key", ("-l", "tank/a:b"), ("tank/a:b",))


def _remote_zfs(marker: str = "") -> tuple[Zfs, RecordingRunner]:
    def respond(command: Command) -> tuple[int, str, str]:
        if command.argv[1:] == ("version",):
            return 0, "zfs-2.2.7-1\nzfs-kmod-2.2.7-1\n", ""
        if command.argv[1] == "get":
            return 0, marker, ""
        return 0, "", ""
    runner = RecordingRunner(respond)
    return Zfs(runner=runner), runner


@pytest.fixture
def ssh_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")


@pytest.mark.usefixtures("ssh_on_path")
@pytest.mark.parametrize("at_terminal", [False, True])
def test_the_hand_over_reads_the_marker_there_then_becomes_ssh(
        monkeypatch: pytest.MonkeyPatch, at_terminal: bool) -> None:
    monkeypatch.setattr(os, "isatty", lambda fd: at_terminal and fd == 0)
    zfs, runner = _remote_zfs()
    with pytest.raises(Replaced):
        hand_over(zfs, HandOver("change-key", ("-l", "-o", "keyformat=hex", "tank/x"),
                                ("tank/x",), NAS, ("-oPort=2",)))
    assert [c.argv for c, _ in runner.calls] == [("zfs", "version"), MARKER_READ]
    assert all(c.remote is not None and c.remote.destination == "root@nas"
               for c, _ in runner.calls)
    (became,) = runner.replaced
    tty = ("-t",) if at_terminal else ()
    assert became.argv[:-1] == ("/usr/bin/ssh", *tty, "-o", "BatchMode=yes", "-oPort=2",
                                "--", "root@nas")
    assert shlex.split(became.argv[-1])[1:] == ["zfs", "change-key", "-l", "-o",
                                                "keyformat=hex", "tank/x"]


@pytest.mark.usefixtures("ssh_on_path")
def test_a_remote_receive_never_gets_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "isatty", lambda fd: True)
    zfs, runner = _remote_zfs()
    with pytest.raises(Replaced):
        hand_over(zfs, HandOver("receive", ("tank/x",), ("tank/x",), NAS))
    assert "-t" not in runner.replaced[0].argv


@pytest.mark.usefixtures("ssh_on_path")
def test_a_pending_rotation_there_is_finished_there_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import encroot.rotate as rotate

    recovered: list[tuple[str, str | None]] = []

    def fake_recover(zfs: Zfs, name: str) -> rotate.RecoveryResult:
        recovered.append((name, zfs.remote.destination if zfs.remote else None))
        return rotate.RecoveryResult(name, "committed", "test")

    monkeypatch.setattr(rotate, "recover", fake_recover)
    zfs, runner = _remote_zfs("tank/x\tencroot:rotation\t{}\tlocal\n")
    with pytest.raises(Replaced):
        hand_over(zfs, HandOver("change-key", ("tank/x",), ("tank/x",), NAS))
    assert recovered == [("tank/x", "root@nas")]
    assert len(runner.replaced) == 1



def test_ssh_options_for_a_local_dataset_are_refused(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["change-key", "--ssh-option", "-4", "tank/x"]) == Exit.USAGE
    assert "--ssh-option: tank/x is on this host" in capsys.readouterr().err


# -- with encroot's additions: the rotation's zfs commands run there, keys on stdin only --

OLD = "11" * 32
NEW = "22" * 32


@pytest.fixture
def nas(monkeypatch: pytest.MonkeyPatch) -> tuple[RotatingWorld, RecordingRunner]:
    """The CLI's Zfs for any host answered by one fake world (its masters faked)."""
    world = RotatingWorld({"tank": encrypted("tank"), "tank/x": encrypted("tank/x"),
                           "tank/y": encrypted("tank/y")}, initial_key=OLD.encode())

    def respond(command: Command) -> tuple[int, str, str]:
        if command.argv[1:] == ("version",):
            return 0, "zfs-2.2.7-1\nzfs-kmod-2.2.7-1\n", ""
        return world(command)

    runner = RecordingRunner(respond)
    world.runner = runner

    def zfs_for(location: Location, masters: SshMasters, **options: object) -> Zfs:
        assert location.remote, "a local dataset got a remote Zfs"
        masters.spawn = lambda argv: (0, "")
        return Zfs(runner=runner, masters=masters,
                   remote=masters.target(location.destination, location.host_label))

    monkeypatch.setattr(cli_rotate, "zfs_for", zfs_for)
    return world, runner


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    monkeypatch.setattr(sys, "stdin", os.fdopen(read, "r"))


def test_the_rotation_runs_there_with_the_key_only_on_sshs_stdin(
        nas: tuple[RotatingWorld, RecordingRunner], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    world, runner = nas
    _stdin(monkeypatch, NEW.encode() + b"\n")
    status = main(["change-key", "-o", "oxide:epoch=2", "--key-stdin", "--ssh-option", "-4",
                   "root@nas:tank/x"])
    assert status == Exit.OK, capsys.readouterr().err
    assert capsys.readouterr().out.startswith("root@nas:tank/x: key changed (hex")
    assert world.keys["tank/x"] == NEW.encode()
    assert world.datasets["tank/x"]["oxide:epoch"] == "2"
    assert runner.calls and all(c.remote is not None and c.remote.destination == "root@nas"
                                and c.remote.options == ("-4",) for c, _ in runner.calls)
    changed = [(c, stdin) for c, stdin in runner.calls if c.argv[1] == "change-key"
               and "atime=on" not in c.argv]
    assert [(c.argv[-1], c.secret_stdin, stdin) for c, stdin in changed] == [
        ("tank/x", True, NEW.encode())]
    assert not any(NEW in arg for c, _ in runner.calls for arg in c.process_argv)


def test_the_json_names_the_host(nas: tuple[RotatingWorld, RecordingRunner],
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    _stdin(monkeypatch, NEW.encode())
    assert main(["change-key", "-o", "oxide:epoch=2", "--key-stdin", "--json",
                 "nas:tank/x"]) == Exit.OK
    assert '"host": "nas"' in capsys.readouterr().out


def test_datasets_on_several_hosts_are_refused_in_one_line(
        nas: tuple[RotatingWorld, RecordingRunner], capsys: pytest.CaptureFixture[str]) -> None:
    _, runner = nas
    assert main(["change-key", "-i", "nas:tank/x", "other:tank/y"]) == Exit.USAGE
    err = capsys.readouterr().err
    assert err == ("encroot: nas:tank/x other:tank/y: on several hosts; change keys on one "
                   "host per command\n")
    assert runner.calls == []
    assert main(["change-key", "-i", "nas:tank/x", "tank/y"]) == Exit.USAGE


@pytest.mark.parametrize(("argv", "said"), [
    (["-o", "oxide:epoch=2", "root@nas:tank/x"], "the new key would be read from keylocation "
     "file:///etc/k, a file on root@nas"),
    (["-o", "oxide:epoch=2", "--key-stdin", "root@nas:tank/x"], "the new key would be read"),
    (["-o", "oxide:epoch=2", "-o", "keylocation=file:///etc/n", "--key-stdin",
      "root@nas:tank/y"], "keylocation file:///etc/n, a file on root@nas"),
    (["-l", "-o", "oxide:epoch=2", "-o", "keylocation=prompt", "--key-stdin",
      "root@nas:tank/x"], "its current key is in keylocation file:///etc/k, a file on root@nas"),
])
def test_a_keylocation_file_there_is_refused_before_any_key_is_read(
        nas: tuple[RotatingWorld, RecordingRunner], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], argv: list[str], said: str) -> None:
    world, runner = nas
    world.datasets["tank/x"].update(keylocation="file:///etc/k", keystatus="unavailable")
    _stdin(monkeypatch, NEW.encode())
    assert main(["change-key", *argv]) == Exit.USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"encroot: root@nas:tank/{argv[-1][-1]}: ") and said in err
    assert err.count("\n") == 1
    assert sys.stdin.read() == NEW                       # the key on stdin was not read
    assert not any(c.mutates for c, _ in runner.calls)


def test_recover_and_get_take_a_remote_dataset(nas: tuple[RotatingWorld, RecordingRunner],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    world, runner = nas
    world.datasets["tank/x"]["oxide:epoch"] = "1"
    world.local["tank/x"] = {"oxide:epoch"}
    assert main(["get", "nas:tank/x", "oxide:epoch"]) == Exit.OK
    assert main(["recover", "-n", "nas:tank/x"]) == Exit.OK
    assert capsys.readouterr().out == ("oxide:epoch\t1\n"
                                       "nas:tank/x: (dry run) nothing to recover: no pending "
                                       "rotation\n")
    assert runner.calls and all(c.remote is not None for c, _ in runner.calls)


def test_the_engine_refuses_a_keylocation_file_there_it_cannot_compare(
        nas: tuple[RotatingWorld, RecordingRunner]) -> None:
    world, runner = nas
    world.datasets["tank/x"]["keylocation"] = "file:///etc/k"
    zfs = Zfs(runner=runner, remote=SshTarget("nas"))
    with Key.hex(NEW) as key, pytest.raises(RotationRefused, match=(
            r"^tank/x: keylocation file:///etc/k is a file on nas, where ZFS would read")):
        rotate_keys(zfs, [ChangeKeyRequest(DatasetName("tank/x"), key, {"oxide:epoch": "2"})])
    assert not any(c.mutates for c, _ in runner.calls)
