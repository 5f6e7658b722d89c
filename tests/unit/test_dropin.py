"""Drop-ins: which command lines go to zfs whole, and that they reach it unchanged.

Real zfs is compared side by side in tests/zfs/test_dropin.py; here the
decision (getopt-style scanning), the exec door through a fake runner, a
real ``execve`` into a stand-in zfs, and the zfs-style key reading of the
change-key additions.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from encroot.cli.dropin import HandOver, drop_in, hand_over
from encroot.cli.rotate import _current_keys, _zfs_way_new_key
from encroot.errors import InvalidProperty
from encroot.keys import Key
from encroot.rotate.plan import DatasetState
from encroot.zfs import Command, SubprocessRunner, Zfs
from encroot.zfs.testing import RecordingRunner, Replaced

from .fakes import make_zfs

HEX = "ab" * 32


@pytest.mark.parametrize(("argv", "operands"), [
    (["receive", "-Fdu", "pool"], ("pool",)),
    (["recv", "-e", "-F", "pool/a", "-u"], ("pool/a",)),           # GNU getopt permutes
    (["receive", "-A", "pool/fs"], ("pool/fs",)),
    (["receive", "-hMc", "pool/fs@snap"], ("pool/fs@snap",)),
    (["receive", "-o", "--json", "pool"], ("pool",)),                # -o's value, not an option
    (["receive", "-Fo", "--recover", "pool"], ("pool",)),            # glued flag, value follows
    (["receive", "-F", "--", "--json"], ("--json",)),                # -- ends the options
    (["receive", "--frobnicate", "pool"], ("pool",)),                # zfs refuses it itself
    (["receive"], ()),
    (["change-key", "-li", "pool/a"], ("pool/a",)),
    (["change-key", "-lokeyformat=hex", "pool/a"], ("pool/a",)),
    (["change-key", "-o", "keylocation=file:///k:1", "pool/a"], ("pool/a",)),
    (["change-key", "-o", "atime=on", "pool/a"], ("pool/a",)),       # zfs refuses it itself
    (["change-key"], ()),
])
def test_zfs_syntax_goes_to_zfs_unchanged(argv: list[str], operands: tuple[str, ...]) -> None:
    handover = drop_in(argv)
    assert handover == HandOver(argv[0], tuple(argv[1:]), operands)


@pytest.mark.parametrize("argv", [
    ["receive", "-F", "--allow-encryption-change", "pool/a"],
    ["receive", "-F", "--allow-enc", "pool/a"],                       # argparse's abbreviation
    ["receive", "-Fu", "pool/a", "--json"],                           # after the operand
    ["receive", "--keep-old=pool/old", "pool/a"],
    ["recv", "--recover", "pool/a"],
    ["receive", "--help"],
    ["change-key", "-o", "oxide:epoch=2", "pool/a"],
    ["change-key", "-ooxide:epoch=2", "pool/a"],
    ["change-key", "-lo", "oxide:epoch=2", "pool/a"],
    ["change-key", "-ln", "pool/a"],                                  # -n: encroot's plan
    ["change-key", "--key-file", "k", "pool/a"],
    ["change-key", "-i", "pool/a", "pool/b"],                         # a batch
    ["doctor"],
    [],
])
def test_encroot_additions_go_to_encroot(argv: list[str]) -> None:
    assert drop_in(argv) is None


def test_posixly_correct_stops_at_the_first_operand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSIXLY_CORRECT", "1")
    handover = drop_in(["receive", "pool", "--json"])
    assert handover is not None and handover.operands == ("pool", "--json")


def recording_runner_with_replace(responses: dict[str, tuple[int, str, str]]
                                  ) -> tuple[Zfs, RecordingRunner, list[Command]]:
    zfs, runner = make_zfs(lambda command: responses.get(command.argv[1], (0, "", "")))
    return zfs, runner, runner.replaced


def test_receive_is_exec_d_with_the_users_arguments_and_nothing_before() -> None:
    zfs, runner, replaced = recording_runner_with_replace({})
    with pytest.raises(Replaced):
        hand_over(zfs, HandOver("receive", ("-Fdu", "-o", "x=1", "pool"), ("pool",)))
    assert runner.calls == []
    assert replaced[0].argv == ("/sbin/zfs", "receive", "-Fdu", "-o", "x=1", "pool")


def test_change_key_reads_the_journal_marker_once_then_execs() -> None:
    zfs, runner, replaced = recording_runner_with_replace({"get": (0, "", "")})
    with pytest.raises(Replaced):
        hand_over(zfs, HandOver("change-key", ("-l", "pool/a"), ("pool/a",)))
    assert runner.argvs == [("/sbin/zfs", "get", "-p", "-H", "-o", "name,property,value,source",
                             "encroot:rotation", "pool/a")]
    assert replaced[0].argv == ("/sbin/zfs", "change-key", "-l", "pool/a")


def test_change_key_finishes_a_pending_rotation_first(monkeypatch: pytest.MonkeyPatch) -> None:
    import encroot.rotate as rotate

    zfs, _runner, replaced = recording_runner_with_replace(
        {"get": (0, "pool/a\tencroot:rotation\t{}\tlocal\n", "")})
    recovered: list[str] = []

    def fake_recover(_zfs: Zfs, name: str) -> rotate.RecoveryResult:
        recovered.append(name)
        return rotate.RecoveryResult(name, "committed", "test")

    monkeypatch.setattr(rotate, "recover", fake_recover)
    with pytest.raises(Replaced):
        hand_over(zfs, HandOver("change-key", ("pool/a",), ("pool/a",)))
    assert recovered == ["pool/a"] and len(replaced) == 1


def test_a_missing_dataset_or_bad_name_is_left_to_zfs() -> None:
    zfs, runner, replaced = recording_runner_with_replace(
        {"get": (1, "", "cannot open 'pool/x': dataset does not exist\n")})
    with pytest.raises(Replaced):
        hand_over(zfs, HandOver("change-key", ("pool/x",), ("pool/x",)))
    with pytest.raises(Replaced):
        hand_over(zfs, HandOver("change-key", ("pool/x@s",), ("pool/x@s",)))
    assert len(runner.calls) == 1 and len(replaced) == 2


def test_only_the_drop_in_subcommands_are_handed_over() -> None:
    zfs, _runner, _replaced = recording_runner_with_replace({})
    with pytest.raises(InvalidProperty):
        zfs.exec_replacing("destroy", ["-r", "pool"])


STAND_IN = """#!/bin/sh
# a stand-in zfs: prints what it was given and how it was started, exits 7
printf '%s|' "$@"; echo
echo "LC_ALL=${LC_ALL-unset}"
grep SigIgn /proc/$$/status
wc -c | tr -d ' '
exit 7
"""


@pytest.fixture
def stand_in(tmp_path: Path) -> dict[str, str]:
    for name in ("zfs", "zpool"):
        program = tmp_path / name
        program.write_text(STAND_IN)
        program.chmod(0o755)
    return {**os.environ, "ENCROOT_ZFS": str(tmp_path / "zfs"),
            "ENCROOT_ZPOOL": str(tmp_path / "zpool"), "LC_ALL": "de_DE.UTF-8"}


def test_the_cli_becomes_zfs_with_argv_stdin_locale_and_exit_status(
        stand_in: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "encroot.cli", "receive", "-Fdu", "-o",
                           "a b=c", "pool/a"], input=b"x" * 5000, capture_output=True,
                          env=stand_in, check=False)
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 7, done.stderr
    assert lines[0] == "receive|-Fdu|-o|a b=c|pool/a|"
    assert lines[1] == "LC_ALL=de_DE.UTF-8"           # the user's locale, not C
    ignored = int(lines[2].split()[1], 16)
    assert not ignored & (1 << 12)                      # SIGPIPE (13) back to default
    assert lines[3] == "5000"                           # the stream, unread by encroot


# The pass-through's whole cost beside zfs is encroot's start-up: it may load these alone.
PASS_THROUGH_MODULES = {"encroot", "encroot._lazy", "encroot._version", "encroot.errors",
                        "encroot.cli", "encroot.cli.dropin", "encroot.zfs", "encroot.zfs.become"}


def test_a_local_pass_through_loads_only_the_exec_path() -> None:
    probe = ("import os, sys\n"
             "def execve(path, argv, env):\n"
             "    print(' '.join(argv[1:]))\n"
             "    print(' '.join(sorted(m for m in sys.modules if m.startswith('encroot'))))\n"
             "    os._exit(0)\n"
             "os.execve = execve\n"
             "from encroot.cli import main\n"
             "main(['receive', '-F', '-u', 'pool/a'])\n")
    env = {**os.environ, "ENCROOT_ZFS": "/bin/true", "ENCROOT_ZPOOL": "/bin/true"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, check=False)
    argv, loaded = done.stdout.splitlines()
    assert argv == "receive -F -u pool/a", done.stderr
    assert set(loaded.split()) == PASS_THROUGH_MODULES


def test_replace_reports_a_missing_program_and_goes_on() -> None:
    from encroot.errors import ZfsUnavailable

    with pytest.raises(ZfsUnavailable, match="cannot start it"):
        SubprocessRunner().replace(Command(("/nonexistent/zfs", "receive")))
    import signal

    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # Python's own setting is back


# -- the change-key additions read keys where zfs would ---------------------------------

def state(name: str, **props: str) -> dict[str, DatasetState]:
    base = {"encryptionroot": name, "keyformat": "passphrase", "keylocation": "prompt",
            "keystatus": "available"}
    return {name: DatasetState(name, {**base, **props}, {})}


@pytest.fixture
def piped_stdin(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def feed(data: bytes) -> None:
        read, write = os.pipe()
        os.write(write, data)
        os.close(write)
        monkeypatch.setattr(sys, "stdin", os.fdopen(read, "r"))
    return feed


def test_prompt_location_reads_current_then_new_key_from_piped_stdin(piped_stdin) -> None:  # type: ignore[no-untyped-def]
    piped_stdin(b"old passphrase\nnew passphrase\n")
    states = state("p/a", keystatus="unavailable")
    args = argparse.Namespace(load=True, current_key_file=[], datasets=["p/a"])
    (current,) = _current_keys(args, ["p/a"], lambda: states)
    new = _zfs_way_new_key("p/a", states, None, None)
    assert current is not None and bytes(current.material()) == b"old passphrase"
    assert new is not None and bytes(new.material()) == b"new passphrase"


def test_file_location_is_left_to_zfs_and_a_new_root_reads_prompt(piped_stdin) -> None:  # type: ignore[no-untyped-def]
    assert _zfs_way_new_key("p/a", state("p/a", keylocation="file:///k"), None, None) is None
    child = state("p/a/c", encryptionroot="p/a", keylocation="none")
    assert _zfs_way_new_key("p/a/c", child, None, None) is None  # zfs: keyformat required
    piped_stdin(HEX.encode() + b"\n")
    key = _zfs_way_new_key("p/a/c", child, "hex", None)
    assert key is not None and key.format == "hex"


def test_l_reads_the_current_key_from_its_keylocation_file(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text(HEX + "\n")
    states = state("p/a", keyformat="hex", keylocation=f"file://{path}", keystatus="unavailable")
    args = argparse.Namespace(load=True, current_key_file=[], datasets=["p/a"])
    (key,) = _current_keys(args, ["p/a"], lambda: states)
    assert isinstance(key, Key) and bytes(key.material()) == HEX.encode()


def test_stdin_line_reads_only_its_own_key(piped_stdin) -> None:  # type: ignore[no-untyped-def]
    piped_stdin(b"\x01" * 32 + b"rest")
    with pytest.raises(Exception, match="exactly 32 bytes, got 33"):
        Key.from_stdin_line("raw")  # zfs reads 33 bytes and refuses a longer raw key
    piped_stdin(b"\x01" * 32)
    with Key.from_stdin_line("raw") as key:
        assert bytes(key.material()) == b"\x01" * 32
