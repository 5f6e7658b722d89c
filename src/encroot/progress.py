"""What a long-running transfer tells whoever draws its progress (the CLI's progress line).

Shared by every operation that streams data (migrate, convert), so that one progress
line serves them all.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Progress", "TransferShape", "human_bytes"]


class TransferShape(Protocol):
    """What a progress line needs of a transfer: where it goes and its estimated bytes."""

    @property
    def target(self) -> str: ...

    @property
    def estimate(self) -> int | None: ...


class Progress(Protocol):
    """Told about each transfer as it runs: its start, bytes as they pass, its end."""

    def start(self, transfer: TransferShape) -> None: ...

    def advance(self, count: int) -> None: ...

    def finish(self, transfer: TransferShape, count: int) -> None: ...


def human_bytes(count: int) -> str:
    """``1000 B``, ``3.1 KiB``, ``1.0 GiB``: byte counts in messages and the progress line."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
