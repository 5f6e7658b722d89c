"""The ZFS command layer: the only code in encroot that starts ``zfs`` or ``zpool``.

``Zfs`` offers typed methods; ``Command``/``Runner`` are the seam tests use
to observe or replace process execution; ``parse`` and ``translate`` hold
the pure text-to-record and stderr-to-exception logic.
"""

from .client import SendSpec, Zfs
from .commands import ZfsCommands
from .parse import PropertyTable, PropertyValue, ZfsVersion, parse_get_json, parse_get_table
from .runner import Binaries, Command, Result, Runner, SubprocessRunner, find_binaries
from .translate import translate

__all__ = [
    "Binaries",
    "Command",
    "PropertyTable",
    "PropertyValue",
    "Result",
    "Runner",
    "SendSpec",
    "SubprocessRunner",
    "Zfs",
    "ZfsCommands",
    "ZfsVersion",
    "find_binaries",
    "parse_get_json",
    "parse_get_table",
    "translate",
]
