"""Planning and recovery decisions of `encroot receive`, as pure functions over ZFS state.

Streams are the real sample heads in tests/data/streams; states are built by
hand in the shape read_state() returns.  The lab tests prove the same rules on
real OpenZFS; these pin every branch cheaply.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from encroot.errors import InputError
from encroot.names import DatasetName
from encroot.receive import (
    ReceiveRefused,
    ReceiveRequest,
    TargetState,
    expected_datasets,
    plan_receive,
)
from encroot.receive.plan import mounted_deepest_first
from encroot.stream import StreamInfo, parse_header

DATA = Path(__file__).parent.parent / "data" / "streams"
TARGET = DatasetName("dst/fs")


def stream(name: str) -> StreamInfo:
    return parse_header((DATA / f"{name}.zstream").read_bytes())


def fs(**props: str) -> dict[str, str]:
    base = {"type": "filesystem", "encryption": "off", "encryptionroot": "-",
            "keystatus": "-", "mounted": "no", "canmount": "on", "userrefs": "-",
            "clones": "-", "receive_resume_token": "-"}
    return {**base, **props}


def snap(**props: str) -> dict[str, str]:
    return {"type": "snapshot", "userrefs": "0", "clones": "", **props}


def state(tree: dict[str, dict[str, str]] | None = None, *, feature: str = "enabled",
          temp: dict[str, dict[str, str]] | None = None,
          old: dict[str, dict[str, str]] | None = None) -> TargetState:
    return TargetState(str(TARGET), feature, fs(), tree if tree is not None else
                       {str(TARGET): fs()}, temp or {}, old or {})


def request(**options: object) -> ReceiveRequest:
    defaults: dict[str, object] = {"target": TARGET, "force": True, "no_mount": True,
                                   "allow_encryption_change": True}
    return ReceiveRequest(**{**defaults, **options})  # type: ignore[arg-type]


def test_replace_plan_steps_in_order() -> None:
    plan = plan_receive(request(), state({"dst/fs": fs(mounted="yes"),
                                          "dst/fs@s": snap()}), stream("raw-full"))
    assert plan.mode == "replace" and plan.receive_into == "dst/fs.encroot-recv"
    assert plan.old == "dst/fs.encroot-old"
    assert [(s.action.value, s.dataset) for s in plan.steps] == [
        ("receive", "dst/fs.encroot-recv"), ("verify", "dst/fs.encroot-recv"),
        ("mark-verified", "dst/fs.encroot-recv"), ("mark-replaced", "dst/fs"),
        ("unmount", "dst/fs"), ("rename", "dst/fs"), ("rename", "dst/fs.encroot-recv"),
        ("destroy-old", "dst/fs.encroot-old"), ("clear-verified", "dst/fs")]
    assert plan.steps[5].detail == "dst/fs.encroot-old" and plan.steps[6].detail == "dst/fs"


def test_the_old_tree_stays_mounted_until_the_verified_new_one_is_swapped_in() -> None:
    plan = plan_receive(request(), state({"dst/fs": fs(mounted="yes")}), stream("raw-full"))
    actions = [s.action.value for s in plan.steps]
    # both markers first: the old tree is unmounted right before the renames
    assert actions.index("mark-verified") < actions.index("mark-replaced") \
        == actions.index("unmount") - 1 == actions.index("rename") - 2
    assert "the old tree stays mounted" in plan.steps[0].detail
    assert "dst/fs stay mounted until the swap (-u)" in " ".join(plan.checks)
    assert mounted_deepest_first({"a": fs(mounted="yes"), "a/b/c": fs(mounted="yes"),
                                  "a/b": fs(mounted="no"), "a/d": fs(mounted="yes")}) == \
        ["a/b/c", "a/d", "a"]


def test_without_u_the_new_tree_is_mounted_and_an_unmounted_target_is_fine() -> None:
    plan = plan_receive(request(no_mount=False), state(), stream("raw-full"))
    assert plan.steps[-1].action.value == "mount"
    unmount = next(s for s in plan.steps if s.action.value == "unmount")
    assert unmount.detail.endswith("what is mounted then")  # nothing is, unless mounted since


def test_keep_old_keeps_instead_of_destroying() -> None:
    plan = plan_receive(request(keep_old=DatasetName("dst/previous")), state(),
                        stream("raw-full"))
    assert plan.old == "dst/previous"
    assert ("keep-old", "dst/previous") in [(s.action.value, s.dataset) for s in plan.steps]
    assert not any(s.action.value == "destroy-old" for s in plan.steps)


@pytest.mark.parametrize(("options", "current", "stream_name", "message"), [
    ({"target": DatasetName("dst")}, state(), "raw-full", "encroot migrate"),
    ({}, state(feature="disabled"), "raw-full", "zpool set feature@encryption=enabled dst"),
    ({"properties": {"keyformat": "hex"}}, state(), "raw-full", "cannot be set or excluded"),
    ({"excluded": ("encryption",)}, state(), "raw-full", "cannot be set or excluded"),
    ({"no_mount": False}, state({"dst/fs": fs(mounted="yes")}), "raw-full", "pass -u"),
    ({}, state(), "raw-incremental", "cannot perform raw receive on top of existing "
                                     "unencrypted dataset"),
    ({}, state({"dst/fs": fs(), "dst/fs/extra": fs()}), "raw-full", "dst/fs/extra"),
    ({}, state({"dst/fs": fs(), "dst/fs@s": snap(userrefs="1")}), "raw-full", "user holds"),
    ({}, state({"dst/fs": fs(), "dst/fs@s": snap(clones="dst/c")}), "raw-full", "dst/c"),
    ({}, state(temp={"dst/fs.encroot-recv": fs()}), "raw-full", "--recover"),
    ({}, state(), "raw-full-resume-missing", "no partial receive"),
])
def test_refusals_name_the_rule(options: dict[str, object], current: TargetState,
                                stream_name: str, message: str) -> None:
    if stream_name == "raw-full-resume-missing":
        info = stream("raw-full")
        info = StreamInfo(**{**info.__dict__, "resuming": True})
    else:
        info = stream(stream_name)
    with pytest.raises((ReceiveRefused, InputError)) as caught:
        plan_receive(request(**options), current, info)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("options", "message"), [
    ({"force": False}, "requires -F"),
    ({"allow_encryption_change": False, "keep_old": DatasetName("dst/x")}, "goes with"),
    ({"keep_old": DatasetName("dst/fs/inside")}, "outside the target"),
])
def test_bad_option_combinations_are_input_errors(options: dict[str, object],
                                                  message: str) -> None:
    with pytest.raises(InputError, match=message):
        request(**options)


def test_feature_disabled_does_not_matter_for_unencrypted_streams() -> None:
    plan = plan_receive(request(), state(feature="disabled"), stream("plain-full"))
    assert plan.mode == "replace"


def test_dependents_are_kept_with_keep_old() -> None:
    plan = plan_receive(request(keep_old=DatasetName("dst/prev")),
                        state({"dst/fs": fs(), "dst/fs/extra": fs(),
                               "dst/fs@s": snap(userrefs="2", clones="dst/c")}),
                        stream("raw-full"))
    assert any("dst/fs/extra" in note for note in plan.notes)
    assert any("user holds" in note for note in plan.notes)


def test_keep_old_name_taken() -> None:
    with pytest.raises(ReceiveRefused, match="exists"):
        plan_receive(request(keep_old=DatasetName("dst/prev")), state(), stream("raw-full"),
                     keep_old_exists=True)


def test_absent_target_is_received_directly() -> None:
    plan = plan_receive(request(), state({}), stream("raw-full"))
    assert plan.mode == "create" and plan.receive_into == "dst/fs"
    assert [s.action.value for s in plan.steps] == ["receive", "verify"]


def test_package_replaces_a_tree_it_brings_entirely() -> None:
    tree = {"dst/fs": fs(), "dst/fs/child": fs(), "dst/fs/child/grandchild": fs()}
    plan = plan_receive(request(), state(tree), stream("raw-replication"))
    assert plan.mode == "replace"


def test_expected_datasets_of_a_raw_package() -> None:
    expected = expected_datasets(stream("raw-replication"))
    assert [(e.relative, e.own_encryption_root, e.encrypted) for e in expected] == [
        ("", True, True), ("child", False, True), ("child/grandchild", False, True)]
    assert set(expected[1].snapshots) == {"A", "B"}


def test_expected_dataset_of_single_streams() -> None:
    raw, = expected_datasets(stream("raw-full"))
    assert raw.own_encryption_root and raw.encrypted and raw.snapshots == {
        "A": stream("raw-full").toguid}
    plain, = expected_datasets(stream("plain-full"))
    assert not plain.own_encryption_root and plain.encrypted is None
