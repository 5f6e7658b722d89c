"""The ZFS command layer: the only code in encroot that starts ``zfs`` or ``zpool``.

``Zfs`` offers typed methods; ``Command``/``Runner`` are the seam tests use
to observe or replace process execution; ``parse`` and ``messages`` (``translate``) hold
the pure text-to-record and stderr-to-exception logic; ``become`` finds zfs
and execs it (the drop-in's path).

The names below are imported on first use (PEP 562): a pass-through
``encroot receive`` imports ``encroot.zfs.become`` alone, and its start-up is
all it costs beside plain ``zfs receive``.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .client import SendSpec, Zfs
    from .commands import ZfsCommands
    from .messages import translate
    from .parse import (
        PropertyTable,
        PropertyValue,
        ZfsVersion,
        parse_get_json,
        parse_get_table,
    )
    from .runner import Binaries, Command, Result, Runner, SubprocessRunner, find_binaries

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

_LAZY = {
    **dict.fromkeys(("SendSpec", "Zfs"), ".client"),
    "ZfsCommands": ".commands",
    **dict.fromkeys(("PropertyTable", "PropertyValue", "ZfsVersion", "parse_get_json",
                     "parse_get_table"), ".parse"),
    **dict.fromkeys(("Binaries", "Command", "Result", "Runner", "SubprocessRunner",
                     "find_binaries"), ".runner"),
    "translate": ".messages",
}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())
