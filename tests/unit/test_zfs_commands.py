"""``ZfsCommands``: the pure builders plans use are the ones ``Zfs``'s methods run."""

from __future__ import annotations

import pytest

from encroot.errors import InvalidName, InvalidProperty
from encroot.zfs import SendSpec, ZfsCommands

from .fakes import BINARIES, make_zfs

NAME = "tank/my data"


def test_the_layer_runs_the_builders_commands_with_its_binary() -> None:
    zfs, runner = make_zfs()
    assert zfs.commands == ZfsCommands(BINARIES.zfs, zpool=BINARIES.zpool)
    build = zfs.commands
    zfs.set(NAME, {"com.example:note": "it's \"x\""})
    zfs.inherit(NAME, "com.example:note", recursive=True)
    zfs.rename(NAME, "tank/other name", no_remount=False)
    zfs.destroy(NAME, recursive=True)
    zfs.mount(NAME, options=["ro"])
    zfs.unmount(NAME, force=True)
    zfs.receive(f"{NAME}@s", 0, options=["-u", "-s"], properties={"compression": "lz4"},
                excluded=["atime"])
    assert [command for command, _ in runner.calls] == [
        build.set(NAME, {"com.example:note": "it's \"x\""}),
        build.inherit(NAME, "com.example:note", recursive=True),
        build.rename(NAME, "tank/other name", no_remount=False),
        build.destroy(NAME, recursive=True),
        build.mount(NAME, options=["ro"]),
        build.unmount(NAME, force=True),
        build.receive(f"{NAME}@s", options=["-u", "-s"], properties={"compression": "lz4"},
                      excluded=["atime"]),
    ]
    assert all(command.mutates for command, _ in runner.calls)


def test_snapshots_holds_and_sends_are_built_as_zfs_runs_them() -> None:
    """Added for convert's steps; ``Zfs``'s own methods stay as they are (their commands
    must not drift from these)."""
    zfs, runner = make_zfs()
    build = zfs.commands
    spec = SendSpec(f"{NAME}@b", base=f"{NAME}@a", raw=False)
    zfs.snapshot([f"{NAME}@s", "tank/x@s"], recursive=True, properties={"a:b": "c d"})
    zfs.hold("keep it", [f"{NAME}@s"])
    zfs.release("keep it", [f"{NAME}@s"])
    zfs.transfer(spec, "tank/copy", options=("-u",))
    assert [command for command, _ in runner.calls] == [
        build.snapshot([f"{NAME}@s", "tank/x@s"], recursive=True, properties={"a:b": "c d"}),
        build.hold("keep it", [f"{NAME}@s"]),
        build.release("keep it", [f"{NAME}@s"]),
        build.send(spec),
        build.receive("tank/copy", options=("-u",)),
    ]
    assert not build.send(spec).mutates


def test_the_argv_is_zfs_own_syntax() -> None:
    build = ZfsCommands()
    assert build.receive(NAME, options=["-u"], properties={"a:b": "c d"},
                         excluded=["atime"]).argv == (
        "zfs", "receive", "-u", "-o", "a:b=c d", "-x", "atime", NAME)
    assert build.rename(NAME, "tank/x").argv == ("zfs", "rename", "-u", NAME, "tank/x")
    assert build.set(NAME, {"a:b": "1", "c:d": "2"}).argv == ("zfs", "set", "a:b=1", "c:d=2",
                                                              NAME)
    assert build.unmount(NAME).shell_line() == "zfs unmount 'tank/my data'"


@pytest.mark.parametrize("build", [
    lambda c: c.receive("tank/x", options=["-z"]),
    lambda c: c.set("tank/x", {}),
    lambda c: c.set("tank/x", {"Bad": "1"}),
    lambda c: c.inherit("tank/x", "a b"),
    lambda c: c.mount("tank/x", options=["ro,rw"]),
    lambda c: c.hold("-r", ["tank/x@s"]),
    lambda c: c.release("a\tb", ["tank/x@s"]),
])
def test_bad_options_are_refused_before_anything_runs(build: object) -> None:
    with pytest.raises(InvalidProperty):
        build(ZfsCommands())  # type: ignore[operator]


def test_bad_names_are_refused() -> None:
    with pytest.raises(InvalidName):
        ZfsCommands().destroy("tank/$x")
    with pytest.raises(InvalidName):
        ZfsCommands().rename("tank/x", "tank/x@s")
