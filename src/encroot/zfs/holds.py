"""``zfs holds`` / ``hold`` / ``release``: the user-hold part of ``Zfs`` (a mixin)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import InvalidProperty
from ..keys import Key
from ..names import SnapshotName
from .runner import Command, Result

__all__ = ["HoldMethods", "check_tag"]

# A hold tag is any text up to ZFS_MAX_DATASET_NAME_LEN without NUL; encroot refuses
# tags that would read as options or carry a tab (the holds listing separates by tabs).
_TAG = re.compile(r"[^\0\t\n-][^\0\t\n]{0,254}")


def check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise InvalidProperty(f"hold tag {tag!r}: 1 to 255 characters, no tab, newline or "
                              "NUL, not starting with '-'", subject=str(tag))
    return tag


class HoldMethods:
    """Reading, placing and releasing user holds on snapshots."""

    if TYPE_CHECKING:
        def zfs_command(self, *args: str, mutates: bool = False,
                        secret: bool = False) -> Command: ...

        def execute(self, command: Command, *, key: Key | None = None, check: bool = True,
                    stdin_fd: int | None = None, data: bytes | None = None,
                    timeout: float | None = None) -> Result: ...

    def holds(self, snapshots: Sequence[str]) -> dict[str, list[str]]:
        """Every user hold on ``snapshots``, in one ``zfs holds -H``: {snapshot: [tags]}."""
        if not snapshots:
            return {}
        names = [SnapshotName(name) for name in snapshots]
        out = self.execute(self.zfs_command("holds", "-H", *names)).stdout
        result: dict[str, list[str]] = {}
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) >= 2:
                result.setdefault(parts[0], []).append(parts[1])
        return result

    def hold(self, tag: str, snapshots: Sequence[str]) -> None:
        """``zfs hold TAG SNAPSHOT...`` (one transaction group)."""
        names = [SnapshotName(name) for name in snapshots]
        self.execute(self.zfs_command("hold", check_tag(tag), *names, mutates=True))

    def release(self, tag: str, snapshots: Sequence[str]) -> None:
        """``zfs release TAG SNAPSHOT...``."""
        names = [SnapshotName(name) for name in snapshots]
        self.execute(self.zfs_command("release", check_tag(tag), *names, mutates=True))
