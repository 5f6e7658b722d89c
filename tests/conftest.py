"""Shared pytest configuration.

Tests marked ``zfs`` need real OpenZFS (root and the zfs kernel module):
they run inside the lab guest (``encroot lab test``).  Anywhere else they
are skipped with a reason that says how to run them, never passed silently.
"""

from __future__ import annotations

import os

import pytest


def _zfs_available() -> str | None:
    """None when real ZFS can be used here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/dev/zfs"):
        return "no ZFS kernel module (/dev/zfs missing)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _zfs_available()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"real-OpenZFS test: {reason}; run it with "
                                   "`encroot lab test` (or ./dev test)")
    for item in items:
        if "zfs" in item.keywords:
            item.add_marker(skip)
