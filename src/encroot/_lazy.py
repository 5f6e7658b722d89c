"""Module attributes imported on first use (PEP 562), for ``encroot`` and ``encroot.zfs``.

A CLI start pays only for what it runs: under the lab's emulation every
module imported costs start-up time, and a pass-through ``encroot receive``
must cost little more than ``zfs receive`` itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping


def lazy_attributes(package: str, table: Mapping[str, str],
                    namespace: MutableMapping[str, object]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``table[name]`` (relative to ``package``) on
    first use and keeps the value in ``namespace`` (the module's globals)."""

    def load(name: str) -> object:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    return load
