"""What a long-running transfer tells whoever draws its progress (the CLI's progress line).

Shared by every operation that streams data (migrate, convert), so that one progress
line serves them all.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Progress", "TransferShape"]


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
