"""Pure parts of change-key: request validation, strategy choice, plans, journal decisions;
and the exact commands the native and journal strategies build (recorded, not run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encroot import Dataset, DatasetName, InputError, InvalidProperty, Key, RotationRefused
from encroot.rotate import Capabilities, ChangeKeyRequest, StrategyUnavailable
from encroot.rotate.journal import Marker, Owner, decide, history_shows_change
from encroot.rotate.plan import DatasetState, RotationPlan, plan_rotation
from encroot.rotate.run import execute
from encroot.zfs import Command, ZfsCommands

from .fakes import BINARIES, make_zfs

HEX = "ab" * 32
TANK_A, TANK_P_C = DatasetName("tank/a"), DatasetName("tank/p/c")
OWNER = Owner(host="h", boot_id="b", pid=1, start="9")
JOURNAL = Capabilities(native=False, channel_program=False, journal=True,
                       reasons={"native": "no", "channel-program": "no"})
NATIVE = Capabilities(native=True, channel_program=False, journal=True)


def root_state(name: str = "tank/a", **overrides: str) -> DatasetState:
    props = {"type": "filesystem", "encryption": "aes-256-gcm", "encryptionroot": name,
             "keyformat": "hex", "keylocation": "prompt", "keystatus": "available",
             "pbkdf2salt": "0", "pbkdf2iters": "0", "origin": "-", **overrides}
    return DatasetState(name, props, {})


def plan(requests: list[ChangeKeyRequest], state: dict[str, DatasetState],
         capabilities: Capabilities = JOURNAL) -> RotationPlan:
    return plan_rotation(requests, state, capabilities, owner=OWNER, started="T",
                         new_id=lambda: "id1", commands=ZfsCommands(BINARIES.zfs))


# -- requests -----------------------------------------------------------------------

def test_request_rejects_encroot_namespace() -> None:
    with Key.hex(HEX) as key, pytest.raises(InvalidProperty, match="reserved"):
        ChangeKeyRequest(TANK_A, key, {"encroot:rotation": "x"})


@pytest.mark.parametrize(("options", "message"), [
    ({"strategy": "fast"}, "strategy 'fast'"),
    ({"keylocation": "https://example.invalid/k"}, "keylocation"),
    ({"pbkdf2iters": 1000}, "at least 100000"),
    ({"keyformat": "raw"}, "keyformat=raw but the key given is a hex key"),
    ({"inherit": True}, "takes no a key"),
])
def test_request_rejects_bad_options(options: dict[str, object], message: str) -> None:
    with Key.hex(HEX) as key, pytest.raises(InputError, match=message):
        ChangeKeyRequest(TANK_A, key, **options)  # type: ignore[arg-type]


def test_request_rejects_bad_dataset_and_property_names() -> None:
    with pytest.raises(InputError, match="@"):
        ChangeKeyRequest("tank/a@snap", inherit=True)  # type: ignore[arg-type]  # raw: its own refusal
    with pytest.raises(InvalidProperty, match="must contain ':'"):
        Dataset("tank/a", zfs=make_zfs()[0]).change_key().property("epoch", "1")


@given(st.text(max_size=40))
def test_property_values_are_validated_or_accepted(value: str) -> None:
    try:
        request = ChangeKeyRequest(TANK_A, properties={"a:b": value}, inherit=True)
    except InvalidProperty as exc:
        assert "\0" in value and "NUL" in str(exc)
    else:
        assert request.properties == {"a:b": value}


# -- strategy and plans ----------------------------------------------------------

def test_auto_picks_journal_where_native_is_missing() -> None:
    with Key.hex(HEX) as key:
        result = plan([ChangeKeyRequest(TANK_A, key, {"x:epoch": "2"})],
                      {"tank/a": root_state()})
    assert result.strategy == "journal"
    (rotation,) = result.rotations
    assert rotation.marker is not None and rotation.stdin_key
    assert rotation.marker.old_keyformat == "hex" and rotation.marker.id == "id1"


def test_auto_prefers_native() -> None:
    with Key.hex(HEX) as key:
        result = plan([ChangeKeyRequest(TANK_A, key, {"x:epoch": "2"})],
                      {"tank/a": root_state()}, NATIVE)
    assert result.strategy == "native" and result.rotations[0].marker is None


def test_asking_for_a_missing_strategy_is_an_error_not_a_fallback() -> None:
    with Key.hex(HEX) as key, pytest.raises(StrategyUnavailable, match="native"):
        plan([ChangeKeyRequest(TANK_A, key, {"x:e": "2"}, strategy="native")],
             {"tank/a": root_state()})


def test_no_properties_means_plain_change_key() -> None:
    with Key.hex(HEX) as key:
        result = plan([ChangeKeyRequest(TANK_A, key)], {"tank/a": root_state()})
    assert result.strategy == "plain" and result.rotations[0].marker is None


@pytest.mark.parametrize(("overrides", "message"), [
    ({"encryption": "off"}, "not encrypted"),
    ({"encryptionroot": "tank"}, "not an encryption root"),
    ({"origin": "tank/b@s"}, "clone"),
    ({"keystatus": "unavailable"}, "key not loaded"),
    ({"type": "snapshot"}, "no key of its own"),
])
def test_preconditions(overrides: dict[str, str], message: str) -> None:
    with Key.hex(HEX) as key, pytest.raises(RotationRefused, match=message):
        plan([ChangeKeyRequest(TANK_A, key, {"x:e": "2"})],
             {"tank/a": root_state(**overrides)})


def test_pending_journal_is_refused_with_the_recover_command() -> None:
    state = DatasetState("tank/a", root_state().props, {"encroot:rotation": "{}"})
    with Key.hex(HEX) as key, pytest.raises(RotationRefused, match="encroot recover tank/a"):
        plan([ChangeKeyRequest(TANK_A, key, {"x:e": "2"})], {"tank/a": state})


def test_inherit_needs_a_loaded_encrypted_parent() -> None:
    child = root_state("tank/p/c")
    request = ChangeKeyRequest(TANK_P_C, None, {"x:e": "2"}, inherit=True)
    with pytest.raises(RotationRefused, match="not encrypted"):
        plan([request], {"tank/p/c": child, "tank/p": root_state("tank/p", encryption="off")})
    with pytest.raises(RotationRefused, match="not loaded"):
        plan([request], {"tank/p/c": child,
                         "tank/p": root_state("tank/p", keystatus="unavailable")})
    result = plan([request], {"tank/p/c": child, "tank/p": root_state("tank/p")})
    assert result.rotations[0].expect_encryptionroot == "tank/p"
    assert result.rotations[0].marker is not None and result.rotations[0].marker.inherit


def test_a_child_given_a_keyformat_becomes_its_own_root_as_in_zfs() -> None:
    child = root_state("tank/p/c", encryptionroot="tank/p", keylocation="none")
    with Key.hex(HEX) as key:
        result = plan([ChangeKeyRequest(TANK_P_C, key, {"x:e": "2"}, keyformat="hex")],
                      {"tank/p/c": child})
        with pytest.raises(RotationRefused, match="give -o keyformat"):
            plan([ChangeKeyRequest(TANK_P_C, key, {"x:e": "2"})], {"tank/p/c": child})
    rotation = result.rotations[0]
    assert rotation.expect_encryptionroot == "tank/p/c" and rotation.stdin_key
    assert rotation.change_options == {"keyformat": "hex", "keylocation": "prompt"}
    assert rotation.marker is not None and rotation.marker.old_encryptionroot == "tank/p"


def test_pbkdf2iters_only_for_passphrases() -> None:
    with Key.hex(HEX) as key, pytest.raises(RotationRefused, match="passphrase keys only"):
        plan([ChangeKeyRequest(TANK_A, key, pbkdf2iters=200000)], {"tank/a": root_state()})


def test_plan_json_names_strategy_steps_and_expectations() -> None:
    with Key.passphrase("correct horse") as key:
        result = plan([ChangeKeyRequest(TANK_A, key, {"x:e": "2"}, pbkdf2iters=200000)],
                      {"tank/a": root_state()})
    document = json.loads(json.dumps(result.as_json()))
    assert document["strategy"] == "journal"
    assert document["datasets"][0]["change_key_options"] == {
        "keyformat": "passphrase", "pbkdf2iters": "200000"}
    assert [step["action"] for step in document["steps"]] == [
        "write-journal", "change-key", "commit-journal", "verify"]
    assert document["steps"][1]["commands"] == [
        "/sbin/zfs change-key -o keyformat=passphrase -o pbkdf2iters=200000 tank/a < <secret>"]
    assert "encroot:rotation" in document["steps"][0]["program"]
    assert "correct horse" not in json.dumps(document)


# -- the journal's decisions --------------------------------------------------------

def marker(**fields: object) -> Marker:
    base: dict[str, object] = dict(id="j1", started="T", owner=OWNER, inherit=False,
                                   old_keyformat="hex", old_pbkdf2salt="0", old_pbkdf2iters="0",
                                   old_encryptionroot="tank/a")
    base.update(fields)
    return Marker(**base)  # type: ignore[arg-type]


def test_marker_round_trips_and_rejects_foreign_values() -> None:
    original = marker(new_keyformat="raw")
    assert Marker.loads(original.dumps()) == original
    with pytest.raises(InputError, match="not a journal"):
        Marker.loads("pending")


@pytest.mark.parametrize(("journal", "now", "verdict"), [
    (marker(new_keyformat="raw"), {"keyformat": "raw"}, "commit"),
    (marker(new_keyformat="raw"), {"keyformat": "hex"}, "abort"),
    (marker(old_keyformat="passphrase", old_pbkdf2salt="5"),
     {"keyformat": "passphrase", "pbkdf2salt": "6"}, "commit"),
    (marker(old_keyformat="passphrase", old_pbkdf2salt="5"),
     {"keyformat": "passphrase", "pbkdf2salt": "5"}, "abort"),
    (marker(inherit=True), {"encryptionroot": "tank"}, "commit"),
    (marker(inherit=True), {"encryptionroot": "tank/a"}, "abort"),
    (marker(), {"keyformat": "hex"}, "unknown"),
    (marker(old_encryptionroot="tank"), {"keyformat": "hex", "encryptionroot": "tank/a"},
     "commit"),
    (marker(old_encryptionroot="tank"), {"keyformat": "hex", "encryptionroot": "tank"},
     "abort"),
])
def test_key_free_evidence(journal: Marker, now: dict[str, str], verdict: str) -> None:
    assert decide(journal, "tank/a", now).verdict == verdict


def test_keys_decide_even_without_other_evidence() -> None:
    assert decide(marker(), "tank/a", {}, new_key_matches=True).verdict == "commit"
    assert decide(marker(), "tank/a", {}, new_key_matches=False).verdict == "abort"
    assert decide(marker(), "tank/a", {}, old_key_matches=True).verdict == "abort"
    assert decide(marker(), "tank/a", {}, old_key_matches=False).verdict == "commit"


def test_history_counts_only_a_change_key_of_this_dataset_after_the_journal() -> None:
    history = ("2026-11-22.10:00:00 zfs change-key tank/a\n"
               "2026-11-22.10:00:01 ioctl channel_program\n    program: '... j1 ...'\n"
               "2026-11-22.10:00:02 zfs change-key -o keyformat=hex tank/ab\n")
    assert not history_shows_change(history, "j1", "tank/a")
    assert history_shows_change(history + "2026-11-22.10:00:03 zfs change-key tank/a\n",
                                "j1", "tank/a")
    assert decide(marker(), "tank/a", {"keyformat": "hex"},
                  history=history + "x zfs change-key tank/a\n").verdict == "commit"


# -- commands built ----------------------------------------------------------------

def test_native_strategy_is_one_change_key_with_the_user_properties() -> None:
    with Key.hex(HEX) as key:
        request = ChangeKeyRequest(TANK_A, key, {"x:epoch": "2", "x:at": "now"},
                                   keylocation="prompt")
        rotation_plan = plan([request], {"tank/a": root_state()}, NATIVE)
    changes = [c for step in rotation_plan.steps for c in step.commands]
    assert [c.argv for c in changes] == [
        ("/sbin/zfs", "change-key", "-o", "keyformat=hex", "-o", "keylocation=prompt",
         "-o", "x:epoch=2",
         "-o", "x:at=now", "tank/a")]
    assert changes[0].secret_stdin and changes[0].mutates


def journal_world(command: Command) -> tuple[int, str, str]:
    """Journal programs succeed, and the verification reads tank/a rotated."""
    if "program" in command.argv:
        return 0, json.dumps({"return": {"written": True, "errors": {},
                                         "tank/a": "committed"}}), ""
    if "get" in command.argv:
        rows = [f"tank/a\t{p}\t{v}\t-" for p, v in root_state().props.items()]
        rows += ["tank/a\tx:epoch\t2\tlocal", "tank/a\tx:e\t2\tlocal"]
        return 0, "\n".join(rows) + "\n", ""
    return 0, "", ""


def test_journal_strategy_commands_and_the_key_only_on_stdin() -> None:
    zfs, runner = make_zfs(journal_world)
    with Key.hex(HEX) as key:
        request = ChangeKeyRequest(TANK_A, key, {"x:epoch": "2"})
        (result,) = execute(zfs, plan([request], {"tank/a": root_state()}), [request])
    assert result.ok and result.strategy == "journal"
    verbs = [argv[1] for argv in runner.argvs]
    assert verbs == ["program", "change-key", "program", "get"]
    secret_inputs = [stdin for command, stdin in runner.calls if command.secret_stdin]
    assert secret_inputs == [HEX.encode()]
    assert all(HEX not in " ".join(argv) for argv in runner.argvs)
    programs = [stdin for command, stdin in runner.calls if "program" in command.argv]
    assert all(p is not None and HEX.encode() not in p for p in programs)


def test_a_current_file_keylocation_must_hold_the_given_key(tmp_path: Path) -> None:
    """zfs reads the new key from a file:// keylocation; a different key there is refused."""
    key_file = tmp_path / "k"
    key_file.write_text("cd" * 32)
    state = {"tank/a": root_state(keylocation=f"file://{key_file}")}
    zfs, runner = make_zfs(journal_world)
    with Key.hex(HEX) as key:
        request = ChangeKeyRequest(TANK_A, key, {"x:e": "2"})
        rotation_plan = plan([request], state)
        assert rotation_plan.rotations[0].keylocation == f"file://{key_file}"
        assert not rotation_plan.rotations[0].stdin_key
        with pytest.raises(RotationRefused, match="holds a different key"):
            execute(zfs, rotation_plan, [request])
    assert runner.calls == []
    key_file.write_text("ab" * 32 + "\n")
    with Key.hex(HEX) as key:
        request = ChangeKeyRequest(TANK_A, key, {"x:e": "2"})
        execute(zfs, plan([request], state), [request])
    assert [argv[1] for argv in runner.argvs] == ["program", "change-key", "program", "get"]
    assert not runner.calls[1][0].secret_stdin and runner.calls[1][1] is None
