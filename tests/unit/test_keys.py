"""Key material: ZFS's format rules, wiping, and refusal to leak."""

from __future__ import annotations

import copy
import gc
import logging
import os
import pickle
from pathlib import Path
from typing import ClassVar

import pytest

from encroot.errors import InvalidKey
from encroot.keys import Key

HEX = "0123456789abcdef" * 4


def material(key: Key) -> bytes:
    view = key.material()
    try:
        return bytes(view)
    finally:
        view.release()


def test_hex_from_text_and_from_32_bytes() -> None:
    with Key.hex(HEX) as key:
        assert key.format == "hex" and material(key) == HEX.encode()
    with Key.hex(bytes(range(32))) as key:
        assert material(key) == bytes(range(32)).hex().encode()


@pytest.mark.parametrize(("value", "rule"), [
    ("abc", "exactly 64 hex characters, got 3"),
    (HEX + "0", "got 65"),
    ("g" * 64, "only the characters 0-9, a-f"),
    (b"\x00" * 31, "got 31"),
])
def test_hex_rules(value: str | bytes, rule: str) -> None:
    with pytest.raises(InvalidKey, match=rule):
        Key.hex(value)


def test_raw_is_exactly_32_bytes() -> None:
    with Key.raw(b"\n" * 32) as key:
        assert key.format == "raw" and material(key) == b"\n" * 32
    for size in (0, 31, 33):
        with pytest.raises(InvalidKey, match=f"exactly 32 bytes, got {size}"):
            Key.raw(b"x" * size)
    with pytest.raises(InvalidKey, match="not text"):
        Key.raw("x" * 32)  # type: ignore[arg-type]


def test_passphrase_rules() -> None:
    assert material(Key.passphrase("12345678")) == b"12345678"
    assert material(Key.passphrase("p" * 512)) == b"p" * 512
    with pytest.raises(InvalidKey, match="8 to 512 bytes, got 7"):
        Key.passphrase("1234567")
    with pytest.raises(InvalidKey, match="got 513"):
        Key.passphrase("p" * 513)
    with pytest.raises(InvalidKey, match="newline"):
        Key.passphrase("secret\npassword")
    with pytest.raises(InvalidKey, match="NUL"):
        Key.passphrase("secret\0password")


def test_close_wipes_the_buffer_in_place() -> None:
    key = Key.hex(HEX)
    buffer = key._buffer
    key.close()
    assert key.closed and len(buffer) == 0
    with pytest.raises(ValueError, match="closed"):
        key.material()


def test_with_block_closes() -> None:
    with Key.passphrase("correct horse") as key:
        pass
    assert key.closed


class RecordingBuffer(bytearray):
    """Records what the buffer held at the moment it was cleared."""

    cleared_with: ClassVar[list[bytes]] = []

    def clear(self) -> None:
        RecordingBuffer.cleared_with.append(bytes(self))
        super().clear()


def test_close_overwrites_the_bytes_before_releasing_them() -> None:
    RecordingBuffer.cleared_with = []
    secret = b"a very secret phrase"
    Key("passphrase", RecordingBuffer(secret)).close()
    assert RecordingBuffer.cleared_with == [b"\0" * len(secret)]


def test_key_cannot_be_copied_pickled_or_shown(caplog: pytest.LogCaptureFixture) -> None:
    secret = "super-secret-passphrase"
    key = Key.passphrase(secret)
    for attempt in (lambda: copy.copy(key), lambda: copy.deepcopy(key),
                    lambda: pickle.dumps(key)):
        with pytest.raises(TypeError, match="cannot be copied"):
            attempt()
    texts = [repr(key), str(key), f"{key}", f"{key!r}", "{}".format(key)]  # noqa: UP032
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("key is %s", key)
    texts.append(caplog.text)
    for text in texts:
        assert secret not in text
        assert "redacted" in text
    assert key != Key.passphrase(secret) and key == key


def test_garbage_collection_wipes() -> None:
    key = Key.raw(b"k" * 32)
    buffer = key._buffer
    del key
    gc.collect()
    assert len(buffer) == 0


def test_from_file_infers_format(tmp_path: Path) -> None:
    cases = {
        "raw": (b"\x01" * 32, "raw", b"\x01" * 32),
        "hex": (HEX.encode() + b"\n", "hex", HEX.encode()),
        "pass": (b"my passphrase\nsecond line ignored", "passphrase", b"my passphrase"),
    }
    for name, (content, fmt, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with Key.from_file(path) as key:
            assert key.format == fmt and material(key) == expected


def test_from_file_explicit_format_wins(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"p" * 32)  # would be inferred as raw
    with Key.from_file(path, "passphrase") as key:
        assert key.format == "passphrase"


def test_from_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidKey, match=r"key file .*missing.*cannot read"):
        Key.from_file(tmp_path / "missing")
    short = tmp_path / "short"
    short.write_bytes(b"short")
    with pytest.raises(InvalidKey, match=r"key file .*short.*8 to 512"):
        Key.from_file(short)


def test_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, HEX.encode() + b"\n")
    os.close(write_fd)

    class FakeStdin:
        def fileno(self) -> int:
            return read_fd

    monkeypatch.setattr("sys.stdin", FakeStdin())
    try:
        with Key.from_stdin() as key:
            assert key.format == "hex" and material(key) == HEX.encode()
    finally:
        os.close(read_fd)


def test_prompt_refuses_raw_keys() -> None:
    with pytest.raises(InvalidKey, match="raw keys cannot be entered"):
        Key.prompt("raw")
