"""Unit tests of ``encroot.migrate.finish``'s pure helpers not covered by the plan tests."""

from __future__ import annotations

from encroot.migrate.finish import mount_waves
from encroot.migrate.model import Node


def _names(waves: list[list[Node]]) -> list[list[str]]:
    return [[node.name for node in wave] for wave in waves]


def test_mount_waves_put_a_file_system_after_every_mount_point_that_holds_its_own() -> None:
    nodes = [Node("dst", mountpoint="/a/dst"),
             Node("dst/home", mountpoint="/a/dst/home"),
             Node("dst/data", mountpoint="/a/dst/data"),
             Node("dst/data/projects", mountpoint="/a/dst/data/projects"),
             Node("dst/ROOT/default", mountpoint="/a/be"),
             Node("dst/data-2", mountpoint="/a/dst/data-2")]
    assert _names(mount_waves(nodes)) == [
        ["dst/ROOT/default", "dst"],
        ["dst/data", "dst/data-2", "dst/home"],
        ["dst/data/projects"]]


def test_mount_waves_follow_mount_points_not_dataset_names() -> None:
    """A file system listed first whose mount point lies inside another's mounts after that
    one, as zfs mount -a orders them."""
    nodes = [Node("dst/a", mountpoint="/m/x/y"), Node("dst/b", mountpoint="/m/x")]
    assert _names(mount_waves(nodes)) == [["dst/b"], ["dst/a"]]


def test_mount_waves_never_mount_two_file_systems_on_one_folder_at_once() -> None:
    nodes = [Node("dst/b", mountpoint="/m"), Node("dst/a", mountpoint="/m"),
             Node("dst/c", mountpoint="/m/c")]
    assert _names(mount_waves(nodes)) == [["dst/a"], ["dst/b"], ["dst/c"]]


def test_mount_waves_of_nothing_are_none() -> None:
    assert mount_waves([]) == []
