"""``encroot change-key [USER@]HOST:DATASET``: the drop-in to that host's zfs (after one
``zfs version`` and the pending-rotation read there), ``--ssh-option`` taken out as
change-key's getopt reads the line, and ssh's terminal for a user at one."""

from __future__ import annotations

import os
import shlex
import shutil

import pytest

from encroot.cli.dropin import HandOver, drop_in, hand_over
from encroot.hosts import Location
from encroot.zfs import Command, Zfs
from encroot.zfs.testing import RecordingRunner, Replaced

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

