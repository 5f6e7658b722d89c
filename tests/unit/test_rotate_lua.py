"""The generated channel programs, run by a real Lua 5.2 against a simulated ``zfs`` table.

The simulation keeps user properties per dataset with their source, and
can be told to fail a given ``zfs.sync``/``zfs.check`` call with an error
code, so the success and the by-hand rollback paths both run.  Like ZFS's
Lua, the runtime has no ``pcall``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lupa.lua52 as lupa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from encroot.rotate.lua import (
    IntentEntry,
    change_key_program,
    finish_program,
    intent_program,
    limits_for,
    lua_string,
)

EINVAL, EIO = 22, 5


@dataclass
class FakeZfs:
    """User properties {dataset: {name: (value, source)}} and injected failures."""

    props: dict[str, dict[str, tuple[str, str]]]
    keys: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    fail: dict[tuple[str, str], int] = field(default_factory=dict)  # (call, prop) -> errno
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def failure(self, call: str, name: str) -> int:
        return self.fail.get((call, name), 0)

    def table(self, lua: Any) -> Any:
        def user_properties(ds: str) -> Callable[..., Any]:
            items = [(n, v, s) for n, (v, s) in sorted(self.props[ds].items())]
            iterator = iter(items)
            return lambda *_: next(iterator, None)

        def check_set(ds: str, name: str, value: str) -> int:
            return self.failure("check.set_prop", name)

        def sync_set(ds: str, name: str, value: str) -> int:
            err = self.failure("sync.set_prop", name)
            if err == 0:
                self.props[ds][name] = (value, ds)
                self.calls.append(("set_prop", ds, name, value))
            return err

        def sync_inherit(ds: str, name: str) -> int:
            self.props[ds].pop(name, None)
            self.calls.append(("inherit", ds, name))
            return 0

        def check_change_key(ds: str, key: Any, keyformat: str) -> int:
            return self.failure("check.change_key", "")

        def sync_change_key(ds: str, key: Any, keyformat: str) -> int:
            err = self.failure("sync.change_key", "")
            if err == 0:
                self.keys[ds] = (bytes(key, "latin-1") if isinstance(key, str) else key,
                                 keyformat)
                self.calls.append(("change_key", ds, keyformat))
            return err

        return lua.table_from({
            "list": lua.table_from({"user_properties": user_properties}),
            "check": lua.table_from({"set_prop": check_set, "change_key": check_change_key}),
            "sync": lua.table_from({"set_prop": sync_set, "inherit": sync_inherit,
                                    "change_key": sync_change_key}),
        })

    def values(self, ds: str) -> dict[str, str]:
        return {n: v for n, (v, _) in self.props[ds].items()}


def run(program: str, fake: FakeZfs, args: dict[str, Any] | None = None) -> Any:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    lua.globals().zfs = fake.table(lua)
    lua.execute("pcall = nil; xpcall = nil")  # ZFS's Lua has neither
    function = lua.execute(f"return function(...) {program} end")
    argument = lua.table_from({k: lua.table_from(v) if isinstance(v, dict) else v
                               for k, v in (args or {}).items()})
    return function(argument)


def to_python(value: Any) -> Any:
    if lupa.lua_type(value) == "table":
        return {k: to_python(v) for k, v in value.items()}
    return value


# -- lua_string -------------------------------------------------------------------

@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200))
def test_lua_string_yields_exactly_the_utf8_bytes(text: str) -> None:
    lua = lupa.LuaRuntime(encoding=None)
    assert lua.execute(f"return {lua_string(text)}") == text.encode()


def test_lua_string_cannot_be_escaped() -> None:
    hostile = '"]] end os.exit() --[[ \\" \n \r \x00'
    literal = lua_string(hostile)
    assert literal.count('"') == 2 and "\n" not in literal
    lua = lupa.LuaRuntime(encoding=None)
    assert lua.execute(f"return {literal}") == hostile.encode()


# -- the journal --------------------------------------------------------------------

def test_intent_writes_marker_and_staged_values_only() -> None:
    fake = FakeZfs({"p/a": {"oxide:epoch": ("1", "p/a")}, "p/b": {}})
    program = intent_program([IntentEntry("p/a", '{"id":"x1"}', {"oxide:epoch": "2"}),
                              IntentEntry("p/b", '{"id":"x2"}', {"oxide:epoch": "9"})])
    result = to_python(run(program, fake))
    assert result == {"written": True, "errors": {}}
    assert fake.values("p/a") == {"oxide:epoch": "1", "encroot:oxide:epoch": "2",
                                  "encroot:rotation": '{"id":"x1"}'}
    assert fake.values("p/b")["encroot:oxide:epoch"] == "9"


def test_intent_refuses_a_second_pending_rotation_and_writes_nothing() -> None:
    fake = FakeZfs({"p/a": {}, "p/b": {"encroot:rotation": ("{}", "p/b")}})
    program = intent_program([IntentEntry("p/a", "{}", {"x:y": "1"}),
                              IntentEntry("p/b", "{}", {"x:y": "1"})])
    result = to_python(run(program, fake))
    assert result["written"] is False and "already pending" in result["errors"]["p/b"]
    assert fake.values("p/a") == {} and fake.calls == []


def test_intent_check_failure_writes_nothing() -> None:
    fake = FakeZfs({"p/a": {}}, fail={("check.set_prop", "encroot:x:y"): EINVAL})
    result = to_python(run(intent_program([IntentEntry("p/a", "{}", {"x:y": "1"})]), fake))
    assert result["written"] is False and "error 22" in result["errors"]["p/a"]
    assert fake.calls == []


def test_intent_sync_failure_undoes_what_it_wrote() -> None:
    fake = FakeZfs({"p/a": {}, "p/b": {}}, fail={("sync.set_prop", "encroot:z:z"): EIO})
    program = intent_program([IntentEntry("p/a", "{}", {"x:y": "1"}),
                              IntentEntry("p/b", "{}", {"z:z": "1"})])
    result = to_python(run(program, fake))
    assert result["written"] is False
    assert fake.values("p/a") == {} and fake.values("p/b") == {}


def test_finish_commits_staged_values_and_clears_the_journal() -> None:
    fake = FakeZfs({"p/a": {"oxide:epoch": ("1", "p/a"), "encroot:oxide:epoch": ("2", "p/a"),
                            "encroot:rotation": ('{"id":"abc"}', "p/a"),
                            "parent:inherited": ("v", "p")}})
    result = to_python(run(finish_program({"p/a": ("abc", True)}), fake))
    assert result == {"p/a": "committed"}
    assert fake.values("p/a") == {"oxide:epoch": "2", "parent:inherited": "v"}


def test_finish_abort_keeps_old_values() -> None:
    fake = FakeZfs({"p/a": {"oxide:epoch": ("1", "p/a"), "encroot:oxide:epoch": ("2", "p/a"),
                            "encroot:rotation": ('{"id":"abc"}', "p/a")}})
    assert to_python(run(finish_program({"p/a": ("abc", False)}), fake)) == {"p/a": "aborted"}
    assert fake.values("p/a") == {"oxide:epoch": "1"}


def test_finish_leaves_another_journal_alone() -> None:
    props = {"encroot:rotation": ('{"id":"other"}', "p/a"), "encroot:x:y": ("2", "p/a")}
    fake = FakeZfs({"p/a": dict(props)})
    result = to_python(run(finish_program({"p/a": ("abc", True)}), fake))
    assert "not pending" in result["p/a"]
    assert fake.props["p/a"] == props


def test_encroot_receive_markers_are_not_taken_for_staged_values() -> None:
    fake = FakeZfs({"p/a": {"encroot:recv-verified": ("g", "p/a"),
                            "encroot:rotation": ('{"id":"abc"}', "p/a")}})
    run(finish_program({"p/a": ("abc", True)}), fake)
    assert fake.values("p/a") == {"encroot:recv-verified": "g"}


# -- the channel-program strategy ---------------------------------------------------

def hidden_key(material: bytes) -> dict[str, Any]:
    return {"hidden": {"key": material.decode("latin-1")}}


def test_change_key_program_success() -> None:
    fake = FakeZfs({"p/a": {"oxide:epoch": ("1", "p/a")}})
    program = change_key_program("p/a", "hex", {"oxide:epoch": "2", "oxide:at": "now"})
    assert "0123" not in program  # the key is not in the text
    result = to_python(run(program, fake, hidden_key(b"0123" * 16)))
    assert result == {"changed": True}
    assert fake.values("p/a") == {"oxide:epoch": "2", "oxide:at": "now"}
    assert fake.keys["p/a"] == (b"0123" * 16, "hex")


def test_change_key_program_checks_before_changing() -> None:
    fake = FakeZfs({"p/a": {"oxide:epoch": ("1", "p/a")}},
                   fail={("check.change_key", ""): EINVAL})
    result = to_python(run(change_key_program("p/a", "raw", {"oxide:epoch": "2"}), fake,
                           hidden_key(bytes(32))))
    assert "cannot change the key" in result["error"]
    assert fake.calls == [] and fake.values("p/a") == {"oxide:epoch": "1"}


def test_change_key_program_restores_properties_when_the_key_change_fails() -> None:
    fake = FakeZfs({"p/a": {"oxide:epoch": ("1", "p/a"), "oxide:inh": ("up", "p")}},
                   fail={("sync.change_key", ""): EIO})
    program = change_key_program("p/a", "hex", {"oxide:epoch": "2", "oxide:inh": "x",
                                                "oxide:new": "y"})
    result = to_python(run(program, fake, hidden_key(b"ab" * 32)))
    assert "changing the key failed: error 5" in result["error"]
    assert fake.values("p/a") == {"oxide:epoch": "1"}  # local value back; others inherited
    assert "p/a" not in fake.keys


def test_change_key_program_takes_no_passphrase() -> None:
    with pytest.raises(ValueError, match="hex or raw"):
        change_key_program("p/a", "passphrase", {})


def test_limits_grow_with_the_program_and_stay_within_zfs_maxima() -> None:
    small = limits_for("x" * 100, 1)
    big = limits_for("x" * 50_000_000, 100_000)
    assert small.instructions >= 10_000_000 and small.memory >= 10 * 1024 * 1024
    assert big.instructions <= 100_000_000 and big.memory <= 100 * 1024 * 1024
    assert big.memory > small.memory
