"""Lua 5.2 literals for the channel programs encroot generates (``zfs program``)."""

from __future__ import annotations

__all__ = ["lua_string"]

_PLAIN_BYTES = frozenset(range(0x20, 0x7F)) - {ord('"'), ord("\\")}


def lua_string(text: str) -> str:
    """``text`` as a double-quoted Lua 5.2 literal that yields exactly its UTF-8 bytes.

    Printable ASCII stays as it is, except ``"`` and ``\\``; every other byte
    becomes a three-digit decimal escape (three digits, so a following digit
    cannot extend it).
    """
    out = ['"']
    for byte in text.encode():
        out.append(chr(byte) if byte in _PLAIN_BYTES else f"\\{byte:03d}")
    out.append('"')
    return "".join(out)
