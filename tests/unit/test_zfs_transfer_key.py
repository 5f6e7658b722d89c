"""A receive that creates an encryption root gets its key through a pipe, never argv;
holds are read, placed and released in one command each."""

from __future__ import annotations

import os

import pytest

from encroot.errors import InvalidProperty
from encroot.keys import Key
from encroot.zfs import Command, SendSpec

from .fakes import make_zfs

HEX = "cd" * 32


def test_the_key_travels_through_an_inherited_pipe_named_by_keylocation() -> None:
    seen: dict[str, bytes] = {}

    def respond(command: Command) -> tuple[int, str, str]:
        if command.key_fd is not None:
            seen["key"] = os.read(command.key_fd, 100)
        return 0, "", ""

    zfs, runner = make_zfs(respond)
    with Key.hex(HEX) as key:
        zfs.transfer(SendSpec("tank/my fs@s1", raw=False), "tank/my fs.encroot-convert",
                     properties={"encryption": "on", "com.x:p": "v"}, key=key)
    sender, receiver = (command for command, _ in runner.calls)
    assert sender.argv == ("/sbin/zfs", "send", "tank/my fs@s1")
    fd = receiver.key_fd
    assert fd is not None and fd > 2
    assert receiver.argv == (
        "/sbin/zfs", "receive", "-u", "-s", "-o", "encryption=on", "-o", "com.x:p=v",
        "-o", "keyformat=hex", "-o", f"keylocation=file:///dev/fd/{fd}",
        "tank/my fs.encroot-convert")
    assert seen["key"] == HEX.encode()
    assert all(HEX not in arg for arg in receiver.argv)
    assert receiver.shell_line().endswith(f"{fd}< <secret>")
    with pytest.raises(OSError):  # closed once the receive ended
        os.fstat(fd)


def test_key_properties_cannot_be_passed_with_a_key() -> None:
    zfs, _ = make_zfs()
    with Key.hex(HEX) as key, pytest.raises(InvalidProperty):
        zfs.transfer(SendSpec("t/a@s", raw=False), "t/b", properties={"keylocation": "prompt"},
                     key=key)


def test_holds_in_one_command_each() -> None:
    def respond(command: Command) -> tuple[int, str, str]:
        if command.argv[1] == "holds":
            return 0, "t/a@s1\tkeep\tThu Jan  1 00:00 2026\nt/a@s1\tmy tag\tx\n", ""
        return 0, "", ""

    zfs, runner = make_zfs(respond)
    assert zfs.holds(["t/a@s1", "t/b@s2"]) == {"t/a@s1": ["keep", "my tag"]}
    zfs.hold("my tag", ["t/a.encroot-convert@s1"])
    zfs.release("keep", ["t/a@s1"])
    assert runner.argvs[1:] == [("/sbin/zfs", "hold", "my tag", "t/a.encroot-convert@s1"),
                                ("/sbin/zfs", "release", "keep", "t/a@s1")]
    with pytest.raises(InvalidProperty):
        zfs.hold("-r", ["t/a@s1"])
    assert zfs.holds([]) == {}
