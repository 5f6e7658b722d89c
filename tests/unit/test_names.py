"""Name and property validation follows OpenZFS's zfs_namecheck.c and zfs_prop.c."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encroot.errors import InputError, InvalidName, InvalidProperty
from encroot.names import (
    MAX_PROPERTIES,
    DatasetName,
    PoolName,
    SnapshotName,
    UserPropertyName,
    in_tree,
    validate_property_value,
    validate_user_properties,
)


@pytest.mark.parametrize("name", [
    "tank", "tank/data", "tank/a b/c", "rpool/ROOT/debian-12", "t/x:y.z_-", "a" * 200,
])
def test_valid_dataset_names_are_accepted_unchanged(name: str) -> None:
    assert DatasetName(name) == name
    assert isinstance(DatasetName(name), str)


@pytest.mark.parametrize(("name", "rule"), [
    ("", "empty"),
    ("tank/", "empty component"),
    ("/tank", "empty component"),
    ("tank//x", "empty component"),
    ("tank/./x", "'.'"),
    ("tank/../x", "'..'"),
    ("tank@snap", "no '@' or '#'"),
    ("tank#bm", "no '@' or '#'"),
    ("tank/x%y", "'%'"),
    ("tank/é", "'é'"),
    ("1tank/x", "start with a letter"),
    ("mirror/x", "reserved"),
    ("t/" + "x" * 254, "longer than 255 bytes"),
    ("t" + "/x" * 51, "deeper than 50"),
])
def test_invalid_dataset_names_name_the_input_and_the_rule(name: str, rule: str) -> None:
    with pytest.raises(InvalidName) as caught:
        DatasetName(name)
    message = str(caught.value)
    assert rule in message
    assert "\n" not in message
    assert message.startswith("dataset name ")


def test_dataset_name_relations() -> None:
    name = DatasetName("tank/a/b")
    assert name.pool == "tank"
    assert name.parent == "tank/a"
    assert DatasetName("tank").parent is None
    assert DatasetName("tank").is_pool_root and not name.is_pool_root
    assert name.child("c d") == "tank/a/b/c d"
    assert name.snapshot("s1") == "tank/a/b@s1"
    assert name.is_descendant_of("tank/a") and not name.is_descendant_of("tank/a/b")
    assert not DatasetName("tank/ab").is_descendant_of("tank/a")


def test_snapshot_names() -> None:
    snap = SnapshotName("tank/x@auto-2026")
    assert snap.dataset == "tank/x" and snap.short == "auto-2026"
    for bad in ("tank/x", "tank@a@b", "tank@", "tank@a/b", "@a", "tank@a#b"):
        with pytest.raises(InvalidName):
            SnapshotName(bad)


def test_pool_names() -> None:
    assert PoolName("tank") == "tank"
    for bad in ("", "1pool", "raidz", "draid", "a/b", "x" * 240):
        with pytest.raises(InvalidName):
            PoolName(bad)


@pytest.mark.parametrize("name", ["com.example:epoch", "oxide:epoch", "a:b", "a:b:c-d_e.f"])
def test_valid_user_properties(name: str) -> None:
    assert UserPropertyName(name) == name


@pytest.mark.parametrize(("name", "rule"), [
    ("epoch", "must contain ':'"),
    (":epoch", "namespace before ':' is empty"),
    ("Oxide:epoch", "'O' is not allowed"),
    ("ox ide:epoch", "' ' is not allowed"),
    ("a:" + "b" * 246, "longer than 247 bytes"),
])
def test_invalid_user_properties(name: str, rule: str) -> None:
    with pytest.raises(InvalidProperty, match=rule):
        UserPropertyName(name)


def test_user_property_at_the_length_limit_is_accepted() -> None:
    name = "a:" + "b" * 245
    assert len(name) == 247
    assert UserPropertyName(name) == name


def test_property_values() -> None:
    assert validate_property_value("a:b", "x" * 8191) == "x" * 8191
    with pytest.raises(InvalidProperty, match="8192 bytes, more than 8191"):
        validate_property_value("a:b", "x" * 8192)
    with pytest.raises(InvalidProperty, match="NUL"):
        validate_property_value("a:b", "x\0y")
    # multi-byte characters count in bytes, as ZFS counts them
    with pytest.raises(InvalidProperty, match="more than 8191"):
        validate_property_value("a:b", "é" * 4096)


def test_property_count_limit() -> None:
    ok = {f"a:p{i}": "v" for i in range(MAX_PROPERTIES)}
    assert len(validate_user_properties(ok)) == MAX_PROPERTIES
    too_many = {**ok, "a:extra": "v"}
    with pytest.raises(InvalidProperty, match="more than 4096 properties"):
        validate_user_properties(too_many)


def test_duplicate_property_in_pairs_is_rejected() -> None:
    with pytest.raises(InvalidProperty, match="given twice"):
        validate_user_properties([("a:b", "1"), ("a:b", "2")])


_ZFS_CHARS = string.ascii_letters + string.digits + "-_.: "


@given(st.text(max_size=300))
def test_fuzz_dataset_name_accepts_only_what_zfs_accepts(text: str) -> None:
    """Any string is either a valid name or raises InputError with a one-line message."""
    try:
        name = DatasetName(text)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    components = name.split("/")
    assert all(c and c not in (".", "..") and set(c) <= set(_ZFS_CHARS) for c in components)
    assert name[0].isascii() and name[0].isalpha()
    assert len(name.encode()) <= 255


@given(st.text(max_size=300))
def test_fuzz_user_property_names(text: str) -> None:
    try:
        name = UserPropertyName(text)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert ":" in name and not name.startswith(":")
    assert set(name) <= set(string.ascii_lowercase + string.digits + "-_.:")


@given(st.text(alphabet=_ZFS_CHARS.replace(" ", ""), min_size=1, max_size=20))
def test_fuzz_snapshot_of_valid_dataset_round_trips(snap: str) -> None:
    if snap in (".", ".."):
        return
    name = DatasetName("tank/fs").snapshot(snap)
    assert name.dataset == "tank/fs" and name.short == snap


def test_in_tree_takes_the_root_its_descendants_snapshots_and_bookmarks_only() -> None:
    inside = ["tank/a", "tank/a/b", "tank/a@s", "tank/a/b@s", "tank/a#m"]
    outside = ["tank/a.encroot-recv", "tank/ab", "tank/a b", "tank", "tank/b/a"]
    assert all(in_tree(name, "tank/a") for name in inside)
    assert not any(in_tree(name, "tank/a") for name in outside)
