"""``encroot receive [USER@]HOST:TARGET``: the drop-in to that host's zfs (after one
``zfs version`` there), ``--ssh-option`` taken out as getopt reads the line, ``-n``
showing the ssh lines, ``--recover`` on a remote target, and exit status 4."""

from __future__ import annotations

import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import encroot.cli.remote as cli_remote
from encroot.cli import main
from encroot.cli.common import Exit
from encroot.cli.dropin import HandOver, drop_in, hand_over, take_ssh_options
from encroot.errors import RemoteZfsMissing, RemoteZfsTooOld
from encroot.hosts import Location
from encroot.owned import RECV_VERIFIED, Owner, ReceiveInProgress, dumps
from encroot.zfs import Command, Zfs
from encroot.zfs.masters import SshMasters
from encroot.zfs.testing import RecordingRunner, Replaced

from .fakes import ReceivingWorld
from .test_receive_remote import TARGET, TEMP, answer_with, world

NAS = Location("pool/x", "nas", "backup")
STREAM = Path(__file__).parent.parent / "data" / "streams" / "raw-full.zstream"


@pytest.mark.parametrize(("argv", "args", "options"), [
    (["receive", "-Fdu", "backup@nas:pool/x"], ("-Fdu", "pool/x"), ()),
    (["recv", "--ssh-option", "-F", "--ssh-option", "/c f", "-u", "backup@nas:pool/x"],
     ("-u", "pool/x"), ("-F", "/c f")),
    (["receive", "--ssh-option=-oPort=2", "-o", "x=1", "backup@nas:pool/x", "--ssh",
      "-4"], ("-o", "x=1", "pool/x"), ("-oPort=2", "-4")),          # abbreviated, after it
    (["receive", "-x", "a:b", "backup@nas:pool/x"], ("-x", "a:b", "pool/x"), ()),
])
def test_a_remote_target_goes_to_that_hosts_zfs(argv: list[str], args: tuple[str, ...],
                                                options: tuple[str, ...]) -> None:
    handover = drop_in(argv)
    assert handover is not None and handover.remote == NAS
    assert handover.args == args and handover.ssh_options == options


def test_ssh_options_are_taken_only_where_getopt_sees_options() -> None:
    assert take_ssh_options(["-o", "--ssh-option", "p"]) == (["-o", "--ssh-option", "p"], [])
    assert take_ssh_options(["--", "--ssh-option", "p"]) == (["--", "--ssh-option", "p"], [])
    assert take_ssh_options(["-Fo", "v", "--ssh-option", "-F", "p"]) == (
        ["-Fo", "v", "p"], ["-F"])


def test_local_names_stay_zfss_and_ssh_options_need_a_remote_target() -> None:
    assert drop_in(["receive", "-F", "tank/a:b"]) == HandOver(
        "receive", ("-F", "tank/a:b"), ("tank/a:b",))                 # zfs judges it
    escaped = drop_in(["receive", "-F", "./tank:b"])
    assert escaped is not None and escaped.remote is None and escaped.args == ("-F", "tank:b")
    assert drop_in(["receive", "--ssh-option", "-F", "tank/x"]) is None
    assert drop_in(["receive", "--take-over", "h", "nas:pool/x"]) is None


def _version(answer: tuple[int, str, str]) -> RecordingRunner:
    return RecordingRunner(lambda command: answer if command.argv[1:] == ("version",)
                           else (0, "", ""))


def test_the_hand_over_checks_the_hosts_zfs_then_becomes_ssh(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    runner = _version((0, "zfs-2.3.2-1\nzfs-kmod-2.3.2-1\n", ""))
    with pytest.raises(Replaced):
        hand_over(Zfs(runner=runner), HandOver("receive", ("-Fdu", "pool/x"),
                                               ("backup@nas:pool/x",), NAS, ("-F", "/c")))
    (checked, _), = runner.calls
    assert checked.argv == ("zfs", "version") and checked.remote is not None
    (became,) = runner.replaced
    assert became.remote is None
    assert became.argv[:3] == ("/usr/bin/ssh", "-o", "BatchMode=yes")
    assert became.argv[3:-1] == ("-F", "/c", "--", "backup@nas")  # no control master
    remote = became.argv[-1]
    assert "LC_ALL" not in remote and remote.startswith('PATH="$PATH:/usr/sbin')
    assert shlex.split(remote)[1:] == ["zfs", "receive", "-Fdu", "pool/x"]


@pytest.mark.parametrize(("answer", "error"), [
    ((127, "", "sh: 1: zfs: not found\n"), RemoteZfsMissing),
    ((0, "zfs-0.8.6-1\nzfs-kmod-0.8.6-1\n", ""), RemoteZfsTooOld),
])
def test_a_host_without_a_usable_zfs_is_refused_before_the_hand_over(
        answer: tuple[int, str, str], error: type[Exception]) -> None:
    runner = _version(answer)
    with pytest.raises(error, match=r"^backup@nas: "):
        hand_over(Zfs(runner=runner), HandOver("receive", ("pool/x",), ("backup@nas:pool/x",),
                                               NAS))
    assert runner.replaced == []


@pytest.fixture
def remote_world(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ReceivingWorld,
                                                                    RecordingRunner]]:
    """The CLI's remote Zfs answered by a fake world; stdin is a raw full stream."""
    fake = world()
    runner = RecordingRunner(answer_with(fake))

    def zfs_for(location: Location, masters: SshMasters, **options: object) -> Zfs:
        masters.spawn = lambda argv: (0, "")
        return Zfs(runner=runner, masters=masters,
                   remote=masters.target(location.destination, location.host_label))

    monkeypatch.setattr(cli_remote, "zfs_for", zfs_for)
    with STREAM.open("rb") as stream:
        monkeypatch.setattr(sys, "stdin", stream)
        yield fake, runner


def test_the_plan_shows_each_command_as_the_ssh_line_that_runs_it(
        remote_world: tuple[ReceivingWorld, RecordingRunner],
        capsys: pytest.CaptureFixture[str]) -> None:
    _, runner = remote_world
    status = main(["receive", "-n", "-F", "-u", "--allow-encryption-change",
                   f"backup@nas:{TARGET}"])
    out = capsys.readouterr().out
    assert status == Exit.OK
    assert out.startswith(f"plan: replace {TARGET} on backup@nas (receive into {TEMP})")
    shown = [line.strip() for line in out.splitlines() if line.strip().startswith("ssh ")]
    assert shown and all(shlex.split(line)[-2] == "backup@nas" for line in shown)
    receive = shlex.split(shlex.split(shown[0])[-1])
    assert receive[:2] == ["LC_ALL=C", 'PATH=$PATH:/usr/sbin:/sbin:/usr/local/sbin']
    assert receive[2:4] == ["zfs", "receive"] and receive[-1] == TEMP
    assert not any(command.mutates for command, _ in runner.calls)


def test_recover_on_a_remote_target(remote_world: tuple[ReceivingWorld, RecordingRunner],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    fake, runner = remote_world
    dead = Owner(host=Owner.current().host, boot_id="an earlier boot", pid=1, start="1")
    fake.datasets[TEMP] = {**fake.datasets["dst"],
                           RECV_VERIFIED: dumps(ReceiveInProgress(target=TARGET, owner=dead))}
    fake.local[TEMP] = {RECV_VERIFIED}
    assert main(["receive", "--recover", f"backup@nas:{TARGET}"]) == Exit.OK
    assert capsys.readouterr().out == (f"backup@nas:{TARGET}: destroy the unfinished "
                                       f"temporary {TEMP}\n")
    assert TEMP not in fake.datasets
    assert all(isinstance(c, Command) and c.remote is not None for c, _ in runner.calls)


def test_ssh_options_for_a_local_target_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["receive", "--recover", "--ssh-option", "-4", "tank/x"]) == Exit.USAGE
    assert "--ssh-option: tank/x is on this host" in capsys.readouterr().err


UNREACHABLE = ["--ssh-option", "-oPort=1", "--ssh-option", "-F", "--ssh-option", "/dev/null"]


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client here")
@pytest.mark.parametrize("argv", [
    ["receive", "-Fu", *UNREACHABLE, "127.0.0.1:tank/x"],                        # drop-in
    ["receive", "--recover", *UNREACHABLE, "127.0.0.1:tank/x"],
    ["change-key", "-l", *UNREACHABLE, "127.0.0.1:tank/x"],                      # drop-in
    ["change-key", "-i", "-n", *UNREACHABLE, "127.0.0.1:tank/x"],
    ["get", *UNREACHABLE, "127.0.0.1:tank/x"],
])
def test_an_unreachable_host_is_one_line_exit_4(argv: list[str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == Exit.REMOTE
    err = capsys.readouterr().err
    assert err.startswith("encroot: 127.0.0.1: unreachable over ssh") and err.count("\n") == 1
