"""encroot.owned: the marker format, every legacy form, foreign values, owners."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import TypedDict

import pytest

from encroot.errors import InputError, OwnerAlive
from encroot.owned import (
    MIGRATE_MARKER,
    RECV_REPLACED,
    RECV_VERIFIED,
    REGISTRY,
    ROTATION_MARKER,
    ConvertKept,
    ConvertPhase,
    ConvertReplaced,
    ConvertVerified,
    Marker,
    MigrateCutover,
    MigratePhase,
    NotOurs,
    Owner,
    ReceiveInProgress,
    ReceiveReplaced,
    ReceiveVerified,
    RotationJournal,
    dumps,
    lookalike_target,
    marker_types_table,
    ownership_table,
    parse_marker,
    refuse_live,
)
from encroot.owned import owner as owner_module

OWNER = Owner(host="h", boot_id="b", pid=42, start="99")
JOURNAL = RotationJournal(id="j1", started="T", inherit=False, old_keyformat="hex",
                          old_pbkdf2salt="0", old_pbkdf2iters="0", old_encryptionroot="p/a",
                          new_keyformat="passphrase", owner=OWNER)
MARKERS: list[Marker] = [
    ReceiveInProgress(target="dst/my data", owner=OWNER),
    ReceiveVerified(guid="123", keep_old="dst/kept", owner=OWNER),
    ReceiveVerified(guid="0"),
    ReceiveReplaced(target="dst/fs", owner=OWNER),
    MigratePhase(source="src", phase="catch-up", owner=OWNER),
    MigrateCutover(source="src", snapshot="s1", devices=("/d 1", "/d2"), owner=OWNER),
    JOURNAL,
    ConvertPhase(target="tank/my data", operation="encrypt", phase="initial", owner=OWNER),
    ConvertVerified(target="tank/d", operation="reencrypt", snapshot="encroot-convert-1",
                    keep_old="tank/kept", owner=OWNER),
    ConvertReplaced(target="tank/d", operation="decrypt", owner=OWNER),
    ConvertKept(target="tank/d", operation="encrypt"),
]


@pytest.mark.parametrize("marker", MARKERS, ids=lambda m: type(m).__name__)
def test_every_marker_round_trips(marker: Marker) -> None:
    text = dumps(marker)
    document = json.loads(text)
    assert document["format"] == 2
    assert set(document) == {"format", "op", "role", "owner", "data"}
    assert parse_marker(type(marker).PROPERTY, text) == marker


def test_the_format_is_as_documented() -> None:
    text = dumps(ReceiveVerified(guid="7", owner=OWNER))
    assert json.loads(text) == {
        "format": 2, "op": "receive", "role": "verified",
        "owner": {"host": "h", "boot_id": "b", "pid": 42, "start": "99"},
        "data": {"guid": "7", "keep_old": None}}


# -- legacy forms (what encroot 0.x writes) -------------------------------------------

def test_legacy_verified_marker() -> None:
    assert parse_marker(RECV_VERIFIED, "123456") == ReceiveVerified(guid="123456")
    assert parse_marker(RECV_VERIFIED, "9 keep-old=dst/old fs") == ReceiveVerified(
        guid="9", keep_old="dst/old fs", owner=None)


def test_legacy_replaced_marker() -> None:
    assert parse_marker(RECV_REPLACED, "dst/my data") == ReceiveReplaced(target="dst/my data")


def test_legacy_migrate_marker_is_a_cutover() -> None:
    # exactly what migrate/run.py's _mark wrote
    value = json.dumps({"source": "tank", "snapshot": "encroot-migrate-1", "stage": "reparent",
                        "devices": "/dev/disk /srv/img"}, sort_keys=True)
    assert parse_marker(MIGRATE_MARKER, value) == MigrateCutover(
        source="tank", snapshot="encroot-migrate-1", stage="reparent",
        devices=("/dev/disk", "/srv/img"), owner=None)


def test_legacy_rotation_journal() -> None:
    # exactly what rotate/journal.py's Marker.dumps wrote (version 1)
    value = json.dumps({"id": "j1", "started": "T", "inherit": False,
                        "owner": {"host": "h", "boot_id": "b", "pid": 1, "start": "9"},
                        "old_keyformat": "hex", "old_pbkdf2salt": "0", "old_pbkdf2iters": "0",
                        "old_encryptionroot": "p/a", "new_keyformat": "passphrase",
                        "new_pbkdf2iters": None, "new_keylocation": None, "version": 1},
                       separators=(",", ":"), sort_keys=True)
    parsed = parse_marker(ROTATION_MARKER, value)
    assert parsed == RotationJournal(id="j1", started="T", inherit=False,
                                     old_keyformat="hex", old_pbkdf2salt="0",
                                     old_pbkdf2iters="0", old_encryptionroot="p/a",
                                     new_keyformat="passphrase", owner=None)
    assert RotationJournal.loads(value) == parsed


# -- not ours ------------------------------------------------------------------------

def _reason(prop: str, value: str | None) -> str:
    parsed = parse_marker(prop, value)
    assert isinstance(parsed, NotOurs), parsed
    return parsed.reason


@pytest.mark.parametrize(("prop", "value", "why"), [
    (RECV_VERIFIED, None, "not set"),
    (RECV_VERIFIED, "-", "not set"),
    (RECV_VERIFIED, "yes", "legacy"),
    (RECV_VERIFIED, "12 keep=x", "legacy"),
    (RECV_VERIFIED, "12 keep-old=bad//name", "dataset name"),
    (RECV_REPLACED, "not a/valid//name", "dataset name"),
    (MIGRATE_MARKER, "somebody's", "not valid JSON"),
    (MIGRATE_MARKER, '{"source": "tank", "snap', "truncated"),
    (MIGRATE_MARKER, "[1, 2]", "not a JSON object"),
    (MIGRATE_MARKER, '{"source": "tank"}', "legacy migrate"),
    (MIGRATE_MARKER, '{"source": "tank", "snapshot": "s", "colour": "red"}', "legacy migrate"),
    (MIGRATE_MARKER, '{"source": "tank", "snapshot": "s", "devices": ["/d"]}', "devices"),
    (ROTATION_MARKER, '{"id": "j"}', "version-1"),
    ("com.example:x", "1", "not a property encroot writes"),
])
def test_foreign_and_damaged_values_are_not_ours(prop: str, value: str | None,
                                                 why: str) -> None:
    assert why in _reason(prop, value)


def _v2(**changes: object) -> str:
    document = json.loads(dumps(ReceiveVerified(guid="7", owner=OWNER)))
    document.update(changes)
    return json.dumps(document)


@pytest.mark.parametrize(("value", "why"), [
    (_v2(format="2"), "'format' must be an integer"),
    (_v2(format=True), "'format' must be an integer"),
    (_v2(format=1), "not an encroot marker of format 2"),
    (_v2(extra=1), "not an encroot marker of format 2"),
    (_v2(role="replaced"), "does not belong"),
    (_v2(op="migrate", role="phase"), "does not belong"),
    (_v2(owner={"host": "h"}), "owner"),
    (_v2(owner={"host": "h", "boot_id": "b", "pid": "42", "start": "9"}), "pid"),
    (_v2(owner={"host": "h", "boot_id": "b", "pid": True, "start": "9"}), "pid"),
    (_v2(owner=[]), "owner"),
    (_v2(data=[]), "'data' must be an object"),
    (_v2(data={"guid": 7}), "'guid' must be a string"),
    (_v2(data={"guid": "x7"}), "digits"),
    (_v2(data={"guid": "7", "keep_old": 3}), "'keep_old'"),
    (_v2(data={"guid": "7", "secret": "x"}), "unknown field"),
])
def test_wrong_shapes_are_not_ours(value: str, why: str) -> None:
    assert why in _reason(RECV_VERIFIED, value)


def test_typed_payloads_are_checked_per_role() -> None:
    phase = json.loads(dumps(MigratePhase(source="src", phase="initial")))
    phase["data"]["phase"] = "later"
    assert "not a phase" in _reason(MIGRATE_MARKER, json.dumps(phase))
    journal = json.loads(dumps(JOURNAL))
    journal["data"]["inherit"] = "no"
    assert "'inherit'" in _reason(ROTATION_MARKER, json.dumps(journal))
    journal["data"]["inherit"], journal["data"]["id"] = False, ""
    assert "'id' is empty" in _reason(ROTATION_MARKER, json.dumps(journal))
    cutover = json.loads(dumps(MARKERS[5]))
    cutover["data"]["devices"] = "/d"
    assert "'devices'" in _reason(MIGRATE_MARKER, json.dumps(cutover))


def test_a_newer_format_is_left_alone() -> None:
    assert "written by a newer encroot" in _reason(RECV_VERIFIED, _v2(format=3))
    assert "written by a newer encroot" in _reason(
        ROTATION_MARKER, json.dumps({"id": "j", "version": 2}))


def test_journal_loads_refuses_what_is_not_a_journal() -> None:
    with pytest.raises(InputError, match="not a journal"):
        RotationJournal.loads("pending")


def test_lookalike_names() -> None:
    assert lookalike_target("dst/my data.encroot-recv") == ("receive temporary", "dst/my data")
    assert lookalike_target("dst/fs.encroot-old") == ("replaced receive target", "dst/fs")
    assert lookalike_target("tank/encroot-migrate") == ("migration staging", "tank")
    assert lookalike_target("tank/a/encroot-migrate") is None
    assert lookalike_target("tank/fs") is None
    assert lookalike_target("t/a.encroot-convert") == ("conversion temporary", "t/a")
    assert lookalike_target("t/a.encroot-convert-old") == ("replaced conversion target", "t/a")


def test_a_convert_marker_with_an_unknown_operation_is_not_ours() -> None:
    text = dumps(ConvertPhase(target="t/a", operation="encrypt", phase="initial"))
    bad = text.replace('"encrypt"', '"shred"')
    assert isinstance(parse_marker("encroot:convert", bad), NotOurs)
    assert isinstance(parse_marker("encroot:convert-replaced", text), NotOurs)


def test_the_registry_covers_every_marker_property() -> None:
    names = {row.name for row in REGISTRY}
    assert {RECV_VERIFIED, RECV_REPLACED, MIGRATE_MARKER, ROTATION_MARKER} <= names
    table = ownership_table()
    assert table.count("\n") == len(REGISTRY) + 1
    assert "`X.encroot-recv` | dataset | receive" in table


# -- owners --------------------------------------------------------------------------

def test_the_current_process_is_alive_and_not_a_holder() -> None:
    me = Owner.current()
    assert me.pid == os.getpid() and me.start
    assert me.alive() and me.is_current() and not me.holds()


def test_a_living_other_process_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    me = Owner.current()
    other = Owner(host=me.host, boot_id=me.boot_id, pid=os.getppid(),
                  start=owner_module.process_start(os.getppid()))
    assert other.alive() and other.holds()
    with pytest.raises(OwnerAlive) as caught:
        refuse_live("dst/fs.encroot-recv", ReceiveInProgress(target="dst/fs", owner=other))
    assert caught.value.pid == os.getppid()
    assert str(caught.value).startswith(
        f"dst/fs.encroot-recv is held by encroot pid {os.getppid()} on this host (started ")
    assert "wait for it or stop it" in str(caught.value)


class OwnerChange(TypedDict, total=False):
    host: str
    boot_id: str
    pid: int
    start: str


@pytest.mark.parametrize("change", [
    {"boot_id": "another boot"}, {"host": "another host"}, {"start": "1"}, {"start": ""},
    {"pid": 2**22 + 12345},
])
def test_dead_owners(change: OwnerChange) -> None:
    me = Owner.current()
    parent = replace(me, pid=os.getppid(), start=owner_module.process_start(os.getppid()))
    other = replace(parent, **change)
    assert not other.alive() and not other.holds()
    refuse_live("x", ReceiveInProgress(target="d/x", owner=other))  # does not raise


def test_unknown_owner_and_foreign_values_never_hold() -> None:
    refuse_live("x", ReceiveVerified(guid="1"), NotOurs("p", "r"), None)


def test_host_id_falls_back_to_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(owner_module, "MACHINE_ID", "/nonexistent/machine-id")
    assert owner_module.host_id() == socket.gethostname()  # os.uname()'s, the same
    real = os.uname()
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(
        (real.sysname, "fallback", real.release, real.version, real.machine)))
    assert owner_module.host_id() == "fallback"


def test_process_start_reads_field_22_after_the_command_name(
        monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    fields = " ".join(str(n) for n in range(3, 30))  # field 3 onwards
    text = f"77 (a) b (c) {fields}"
    monkeypatch.setattr(owner_module, "_read", lambda path: text)
    assert owner_module.process_start(77) == "22"
    monkeypatch.setattr(owner_module, "_read", lambda path: "")
    assert owner_module.process_start(77) == ""


def test_design_md_holds_the_registry_and_the_marker_types_as_the_code_renders_them() -> None:
    """docs/design.md's ownership table and marker table come from the code (issue 12, 9)."""
    design = (Path(__file__).parents[2] / "docs" / "design.md").read_text()
    assert ownership_table() in design
    assert marker_types_table() in design
