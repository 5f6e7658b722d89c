"""Where a stream lands: -d, -e and FS@SNAP targets named as zfs_receive_one() names them.

The rule is quoted in ``encroot.receive.target``; the lab's tests/zfs/test_receive_forms.py
checks each form against real zfs receive.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from encroot.errors import InputError
from encroot.names import DatasetName
from encroot.receive import ReceiveRefused, ReceiveRequest, TargetState, plan_receive
from encroot.receive.target import derived_target, split_target

from .test_receive_plan import fs, state, stream


@pytest.mark.parametrize(("destination", "toname", "flag", "lands"), [
    ("dst", "pool/a/b@s", "-d", "dst/a/b"),       # all but the pool name
    ("dst", "pool/a@s", "-d", "dst/a"),
    ("dst", "pool@s", "-d", "dst"),               # a pool's root lands in DEST itself
    ("dst/x", "p/enc@B", "-d", "dst/x/enc"),
    ("dst", "pool/a/b@s", "-e", "dst/b"),         # the last element only
    ("dst", "pool/a@s", "-e", "dst/a"),
    ("dst", "pool@s", "-e", "dst/pool"),          # a pool's root: its name
    ("dst/x", "p/enc/child@A", "-e", "dst/x/child"),
    ("dst/x", "pool/a/b@s", "", "dst/x"),         # no flag: the target as given
    ("dst", "pool/my data@s", "-d", "dst/my data"),
])
def test_the_target_is_derived_as_zfs_derives_it(destination: str, toname: str, flag: str,
                                                 lands: str) -> None:
    assert derived_target(destination, toname, flag) == lands


def test_a_derived_name_that_is_too_long_is_refused_naming_it() -> None:
    with pytest.raises(InputError, match=r"-d dst/x: the stream's 'pool/a{250}@s' would land "
                                         r"in 'dst/x/a{250}', which is not a valid name "
                                         r"\(.*longer than 255 bytes\)"):
        derived_target("dst/x", "pool/" + "a" * 250 + "@s", "-d")
    with pytest.raises(InputError, match="only with -d or -e"):
        derived_target("dst", "pool/a@s", "-x")


def test_snapshot_targets_split_and_are_refused_with_d_or_e() -> None:
    assert split_target("dst/fs@mine") == ("dst/fs", "mine")
    assert split_target("dst/fs") == ("dst/fs", None)
    with pytest.raises(InputError, match="invalid argument - snapshot not allowed with -d"):
        split_target("dst/fs@mine", "-d")
    with pytest.raises(InputError, match="snapshot name"):
        split_target("dst/fs@a@b")


def request(**options: object) -> ReceiveRequest:
    defaults: dict[str, object] = {"target": DatasetName("dst"), "force": True,
                                   "no_mount": True, "allow_encryption_change": True}
    return ReceiveRequest(**{**defaults, **options})  # type: ignore[arg-type]


def current_for(current: TargetState, target: str) -> TargetState:
    """``state()`` is built for dst/fs; the same trees under another target name."""
    return replace(current, target=target)


def test_a_package_received_with_e_replaces_the_derived_target() -> None:
    resolved = request(name_from_stream="-e").for_stream(stream("raw-replication"))
    assert (resolved.target, resolved.destination) == ("dst/enc", "dst")
    assert resolved.zfs_target() == "dst"                       # zfs receive -e dst
    assert resolved.zfs_target("dst/enc.encroot-recv") == "dst/enc.encroot-recv"
    assert resolved.zfs_flags() == ["-F", "-u", "-e"]
    assert resolved.for_stream(stream("raw-replication")) is resolved
    current = state({"dst/enc": fs(), "dst/enc/child": fs(),
                     "dst/enc/child/grandchild": fs()})
    plan = plan_receive(resolved, current_for(current, "dst/enc"), stream("raw-replication"))
    assert plan.mode == "replace" and plan.receive_into == "dst/enc.encroot-recv"
    assert [e.relative for e in plan.expected] == ["", "child", "child/grandchild"]
    assert "named by the stream below dst (-e" in " ".join(plan.checks)


def test_with_d_a_missing_target_is_created_by_zfs_receive_d_itself() -> None:
    resolved = request(name_from_stream="-d").for_stream(stream("raw-full"))
    assert resolved.target == "dst/enc"
    plan = plan_receive(resolved, current_for(state({}), "dst/enc"), stream("raw-full"))
    assert plan.mode == "create" and plan.steps[0].action.value == "receive"
    assert resolved.zfs_target() == "dst"  # zfs receive -d dst creates missing parents


def test_a_snapshot_target_names_the_received_snapshot() -> None:
    named = request(target=DatasetName("dst/fs"), snapshot="mine")
    plan = plan_receive(named, state(), stream("raw-full"))
    assert plan.mode == "replace"
    assert dict(plan.expected[0].snapshots) == {"mine": stream("raw-full").toguid}
    assert named.zfs_target("dst/fs.encroot-recv") == "dst/fs.encroot-recv@mine"
    assert named.zfs_target() == "dst/fs@mine"


def test_a_snapshot_target_for_a_replication_package_is_refused_as_zfs_does() -> None:
    named = request(target=DatasetName("dst/fs"), snapshot="mine")
    with pytest.raises(ReceiveRefused, match=r"cannot specify snapshot name for multi-snapshot "
                                             r"stream.*nothing was changed"):
        plan_receive(named, state(), stream("raw-replication"))


def test_snapshots_with_d_or_e_are_refused_in_the_request() -> None:
    with pytest.raises(InputError, match="snapshot not allowed with -e"):
        request(snapshot="mine", name_from_stream="-e")
    with pytest.raises(InputError, match="use -d or -e"):
        request(name_from_stream="-x")


def test_zfs_receive_forms_the_replacement_does_not_take_are_refused() -> None:
    with pytest.raises(InputError, match="does not take it"):
        request(properties={"origin": "dst/base@s"})
