"""Parsers of zfs output, fed with text in the shapes OpenZFS 2.1-2.4 print."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encroot.errors import ZfsError
from encroot.zfs.parse import parse_get_json, parse_get_table, parse_pool_listing, parse_version


def test_table_rows_and_sources() -> None:
    text = (
        "tank\tencryption\taes-256-gcm\t-\n"
        "tank\tkeylocation\tprompt\tlocal\n"
        "tank/a\tencryptionroot\ttank\t-\n"
        "tank/a\tcompression\tlz4\tinherited from tank\n"
        "tank/a\tcom.x:epoch\t2\treceived\n"
    )
    table = parse_get_table(text)
    assert list(table) == ["tank", "tank/a"]
    assert table.value("tank", "encryption") == "aes-256-gcm"
    assert table["tank"]["keylocation"].is_local
    assert table["tank/a"]["compression"].inherited_from == "tank"
    assert table["tank/a"]["com.x:epoch"].source == "received"
    assert table.value("tank/a", "missing") is None


def test_table_values_with_tabs_and_newlines() -> None:
    text = (
        "tank/a b\tcom.x:note\tone\ttwo\tlocal\n"
        "tank/a b\tcom.x:multi\tline1\n"
        "line2\twith tab\n"
        "line3\tlocal\n"
        "tank/a b\tused\t1024\t-\n"
    )
    table = parse_get_table(text)
    assert table.value("tank/a b", "com.x:note") == "one\ttwo"
    assert table.value("tank/a b", "com.x:multi") == "line1\nline2\twith tab\nline3"
    assert table["tank/a b"]["com.x:multi"].source == "local"
    assert table.value("tank/a b", "used") == "1024"


def test_json_output_of_openzfs_2_3() -> None:
    # captured from `zfs get -j -p encryption,keystatus labtest/enc` on 2.3.2
    text = ('{"output_version":{"command":"zfs get","vers_major":0,"vers_minor":1},'
            '"datasets":{"labtest/enc":{"name":"labtest/enc","type":"FILESYSTEM",'
            '"pool":"labtest","createtxg":"8","properties":{"encryption":{"value":'
            '"aes-256-gcm","source":{"type":"NONE","data":"-"}},"keystatus":{"value":'
            '"available","source":{"type":"NONE","data":"-"}}}}}}')
    table = parse_get_json(text)
    assert table.value("labtest/enc", "encryption") == "aes-256-gcm"
    assert table["labtest/enc"]["keystatus"].source == "-"


def test_json_sources_match_table_wording() -> None:
    doc = {"datasets": {"t/a": {"properties": {
        "compression": {"value": "lz4", "source": {"type": "INHERITED", "data": "t"}},
        "x:y": {"value": "1", "source": {"type": "LOCAL", "data": "-"}},
        "atime": {"value": "on", "source": {"type": "DEFAULT", "data": "-"}},
        "x:z": {"value": "2", "source": {"type": "RECEIVED", "data": "-"}},
    }}}}
    table = parse_get_json(json.dumps(doc))
    assert table["t/a"]["compression"].source == "inherited from t"
    assert [table["t/a"][p].source for p in ("x:y", "atime", "x:z")] == [
        "local", "default", "received"]


@pytest.mark.parametrize("text", ["", "{", "[]", '{"no": 1}', "null", '{"datasets": []}',
                                  '{"datasets": {"t": {"properties": {"p": 3}}}}'])
def test_json_garbage_is_a_zfs_error(text: str) -> None:
    with pytest.raises(ZfsError, match="cannot read"):
        parse_get_json(text)


@pytest.mark.parametrize(("text", "userland", "kernel"), [
    ("zfs-2.1.11-1\nzfs-kmod-2.1.11-1\n", (2, 1, 11), (2, 1, 11)),
    ("zfs-2.3.2-2~bpo12+2\nzfs-kmod-2.3.2-2~bpo12+2\n", (2, 3, 2), (2, 3, 2)),
    ("zfs-2.4.4-1\n", (2, 4, 4), None),
    ("zfs-2.3.99-1\nzfs-kmod-2.2.0-1\n", (2, 3, 99), (2, 2, 0)),
])
def test_versions(text: str, userland: tuple[int, ...], kernel: tuple[int, ...] | None) -> None:
    version = parse_version(text)
    assert version.userland == userland and version.kernel == kernel
    assert version.at_least(2, 1)


def test_version_uses_the_older_of_userland_and_module() -> None:
    version = parse_version("zfs-2.3.99-1\nzfs-kmod-2.2.0-1\n")
    assert not version.at_least(2, 3)
    assert "2.3.99" in str(version) and "2.2.0" in str(version)


def test_unreadable_version() -> None:
    with pytest.raises(ZfsError, match="cannot read the OpenZFS version"):
        parse_version("command not found")


@given(st.text())
def test_fuzz_table_parser_never_crashes(text: str) -> None:
    table = parse_get_table(text)
    for name in table:
        assert "\t" not in name


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(["datasets", "properties", "value",
                                                        "source", "type", "data", "t"]),
                                       inner, max_size=3), max_leaves=12)


@given(st.one_of(st.text(), _JSON.map(json.dumps)))
def test_fuzz_json_parser_raises_only_zfs_error(text: str) -> None:
    try:
        parse_get_json(text)
    except ZfsError as exc:
        assert "cannot read" in str(exc)


_VALUE = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"),
                 max_size=40).filter(lambda v: not v.endswith("\n"))


@given(st.lists(st.tuples(st.sampled_from(["tank", "tank/a", "tank/b c"]),
                          st.sampled_from(["x:one", "x:two", "compression"]), _VALUE),
                max_size=8))
def test_fuzz_table_round_trip(rows: list[tuple[str, str, str]]) -> None:
    """Values with tabs or newlines survive, unless a line imitates a whole row."""
    expected: dict[tuple[str, str], str] = {}
    lines = []
    for name, prop, value in rows:
        if any(_looks_like_row(part) for part in value.split("\n")[1:]):
            return
        expected[(name, prop)] = value
        lines.append(f"{name}\t{prop}\t{value}\tlocal")
    table = parse_get_table("\n".join(lines) + "\n")
    for (name, prop), value in expected.items():
        assert table.value(name, prop) == value


def _looks_like_row(line: str) -> bool:
    import re

    return re.match(r"^[A-Za-z0-9_.: /@#%-]+\t[a-z0-9_.:@-]+\t", line) is not None


# zpool list -v -H -P -o name,feature@encryption dst (print_pool, then print_list_stats,
# whose vdev columns ignore -o): a mirror, a log and a cache device.
POOL_LISTING = (
    "dst\tactive\n"
    "\tmirror-0\t960M\t1.2M\t959M\t-\t-\t0%\t0%\t-\tONLINE\n"
    "\t/var/lib/pools/a.img\t-\t-\t-\t-\t-\t-\t-\t-\tONLINE\n"
    "\t/var/lib/pools/b.img\t-\t-\t-\t-\t-\t-\t-\t-\tONLINE\n"
    "logs      -      -      -        -         -      -      -      -         -\n"
    "\t/dev/disk/by-id/log-part1\t-\t-\t-\t-\t-\t-\t-\t-\tONLINE\n"
    "cache      -      -      -        -         -      -      -      -         -\n"
    "\t/dev/sdc\t-\t-\t-\t-\t-\t-\t-\t-\tONLINE\n")


def test_pool_listing_gives_the_pool_row_and_every_leaf_device() -> None:
    listing = parse_pool_listing(POOL_LISTING, ["feature@encryption"])
    assert listing is not None
    assert listing.name == "dst"
    assert listing.properties == {"feature@encryption": "active"}
    assert listing.devices == ("/var/lib/pools/a.img", "/var/lib/pools/b.img",
                               "/dev/disk/by-id/log-part1", "/dev/sdc")
    assert parse_pool_listing("", ["feature@encryption"]) is None
