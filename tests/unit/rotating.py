"""A fake ZFS in which key rotations land roughly as they would (never proof that ZFS works).

``RotatingWorld`` extends ``FakeDatasets`` (reads, ``set``/``inherit``) with what
``encroot change-key`` and ``encroot recover`` run: the capability probes,
``zfs change-key`` (key properties, ``-i``, user properties for a native
strategy; the key it got on stdin becomes the dataset's), ``zfs load-key``
(``-n`` checks the key on stdin against that), and the journal's channel
programs, whose Lua
text it reads from the recording runner's last stdin and interprets just
enough (which datasets, markers, staged values, commit or abort).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from encroot.owned import ROTATION_MARKER, ROTATION_STAGE_PREFIX
from encroot.zfs import Command
from encroot.zfs.testing import RecordingRunner

from .fakes import FakeDatasets

_LUA = r'"(?:[^"\\]|\\\d{3})*"'
_INTENT = re.compile(rf"\{{ds = ({_LUA}), marker = ({_LUA}), staged = \{{(.*?)\}}\}},")
_STAGED = re.compile(rf"\[({_LUA})\] = ({_LUA})")
_FINISH = re.compile(rf"\{{ds = ({_LUA}), id = ({_LUA}), commit = (true|false)\}},")
PROBE_REFUSAL = ("cannot change key: only keyformat, keylocation and pbkdf2iters may be set "
                 "with this command")


def lua_text(literal: str) -> str:
    """The text of a literal ``lua_string`` wrote (decimal escapes back to bytes)."""
    body = literal[1:-1]
    return re.sub(rb"\\(\d{3})", lambda m: bytes([int(m.group(1))]),
                  body.encode()).decode()


def encrypted(name: str, **props: str) -> dict[str, str]:
    """An encrypted file system, its own root with a loaded hex key, unless overridden."""
    return {"type": "filesystem", "encryption": "aes-256-gcm", "encryptionroot": name,
            "keyformat": "hex", "keylocation": "prompt", "keystatus": "available",
            "pbkdf2salt": "0", "pbkdf2iters": "0", "origin": "-", **props}


@dataclass
class RotatingWorld(FakeDatasets):
    """See the module docstring.  ``native``: change-key accepts user properties;
    ``fail``: dataset -> the ZFS message its change-key fails with; ``keys``:
    each encryption root's current key (``initial_key`` where not set)."""

    native: bool = False
    fail: dict[str, str] = field(default_factory=dict)
    keys: dict[str, bytes] = field(default_factory=dict)
    initial_key: bytes = b""
    runner: RecordingRunner | None = None
    salts: int = 0

    def __call__(self, command: Command) -> tuple[int, str, str]:
        argv = command.argv
        if argv[1] == "change-key" and "atime=on" in argv:
            return 1, "", PROBE_REFUSAL + (", and user properties may be set" if self.native
                                           else "") + "\n"
        if argv[1] == "program":
            return self._program(argv)
        if argv[1] == "change-key":
            self.changes.append(argv[1:])
            if argv[-1] in self.fail:
                return 1, "", self.fail[argv[-1]] + "\n"
            self._change_key(argv[2:-1], argv[-1], self._stdin(command))
            return 0, "", ""
        if argv[1] == "load-key":
            if self._stdin(command) != self.key_of(argv[-1]):
                return 255, "", f"Key load error: Incorrect key provided for '{argv[-1]}'.\n"
            if "-n" not in argv:
                self.changes.append(argv[1:])
                self.datasets[argv[-1]]["keystatus"] = "available"
            return 0, "", ""
        return super().__call__(command)

    def key_of(self, name: str) -> bytes:
        return self.keys.get(self.datasets[name]["encryptionroot"], self.initial_key)

    def _stdin(self, command: Command) -> bytes | None:
        assert self.runner is not None, "RotatingWorld.runner: the runner recording stdin"
        recorded, stdin = self.runner.calls[-1]
        assert recorded is command
        return stdin

    def _set_local(self, name: str, prop: str, value: str) -> None:
        self.datasets[name][prop] = value
        self.local.setdefault(name, set()).add(prop)

    def _drop_local(self, name: str, prop: str) -> None:
        self.datasets[name].pop(prop, None)
        self.local.get(name, set()).discard(prop)

    def _change_key(self, options: tuple[str, ...], name: str, key: bytes | None) -> None:
        props = self.datasets[name]
        self.keys[name] = key if key is not None else b"<the keylocation file>"
        if "-i" in options:
            parent_root = self.datasets[name.rsplit("/", 1)[0]]["encryptionroot"]
            props.update(encryptionroot=parent_root,
                         keyformat=self.datasets[parent_root]["keyformat"])
            return
        props["encryptionroot"] = name
        for index, option in enumerate(options):
            if option == "-o":
                prop, _, value = options[index + 1].partition("=")
                if ":" in prop:
                    self._set_local(name, prop, value)
                else:
                    props[prop] = value
        if props.get("keyformat") == "passphrase":
            self.salts += 1
            props["pbkdf2salt"] = str(1000 + self.salts)

    def _program(self, argv: tuple[str, ...]) -> tuple[int, str, str]:
        assert self.runner is not None, "RotatingWorld.runner: the runner recording stdin"
        script = (self.runner.calls[-1][1] or b"").decode()
        if "-n" in argv:  # the capability probe (OpenZFS 2.1 to 2.4: no change_key)
            return 0, json.dumps({"return": {"change_key": "nil"}}), ""
        self.changes.append((*argv[1:], "<program>"))
        if "written = true" in script:
            for ds, marker, staged in _INTENT.findall(script):
                name = lua_text(ds)
                self._set_local(name, ROTATION_MARKER, lua_text(marker))
                for prop, value in _STAGED.findall(staged):
                    self._set_local(name, ROTATION_STAGE_PREFIX + lua_text(prop),
                                    lua_text(value))
            return 0, json.dumps({"return": {"written": True, "errors": {}}}), ""
        results = {}
        for ds, journal, commit in _FINISH.findall(script):
            name = lua_text(ds)
            marker = self.datasets[name].get(ROTATION_MARKER, "")
            if lua_text(journal) not in marker:
                results[name] = f"journal {lua_text(journal)} is not pending here"
                continue
            for prop in [p for p in self.datasets[name] if p.startswith(ROTATION_STAGE_PREFIX)
                         and p != ROTATION_MARKER]:
                if commit == "true":
                    self._set_local(name, prop[len(ROTATION_STAGE_PREFIX):],
                                    self.datasets[name][prop])
                self._drop_local(name, prop)
            self._drop_local(name, ROTATION_MARKER)
            results[name] = "committed" if commit == "true" else "aborted"
        return 0, json.dumps({"return": results}), ""
