"""The progress line of a long transfer: bytes, rate and ETA, never above 100%."""

from __future__ import annotations

import time
from typing import Any, TextIO

from ..progress import TransferShape, human_bytes

__all__ = ["TransferProgress"]

REDRAW_SECONDS = 0.5


class TransferProgress:
    """One line per transfer: dataset, bytes of the estimate, rate and ETA.

    On a terminal the line is redrawn in place twice a second; elsewhere
    (logs, CI) only the finished line is printed.
    """

    def __init__(self, out: TextIO, *, clock: Any = time.monotonic) -> None:
        self.out = out
        self.clock = clock
        self.live = out.isatty()
        self.transfer: TransferShape | None = None
        self.done = 0
        self.started = 0.0
        self.drawn = 0.0

    def start(self, transfer: TransferShape) -> None:
        self.transfer, self.done = transfer, 0
        self.started = self.drawn = self.clock()

    def advance(self, count: int) -> None:
        self.done += count
        now = self.clock()
        if self.live and now - self.drawn >= REDRAW_SECONDS:
            self.drawn = now
            self.out.write("\r" + self.line(now) + "\033[K")
            self.out.flush()

    def finish(self, transfer: TransferShape, count: int) -> None:
        self.done = count
        ending = "\033[K\n" if self.live else "\n"
        self.out.write(("\r" if self.live else "") + self.line(self.clock(), finished=True)
                       + ending)
        self.out.flush()

    def line(self, now: float, *, finished: bool = False) -> str:
        """``DST/x: 120.0 MiB of 1.0 GiB (12%), 30.0 MiB/s, ETA 0:29``.

        ``zfs send -nP`` only estimates: a stream may outgrow it (small
        incrementals do).  The total then grows with what arrived, so the line
        never reads more done than the total, and a transfer still running
        reads at most 99%; a finished one reads what arrived, 100%.
        """
        assert self.transfer is not None
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        estimate = self.transfer.estimate
        total = self.done if finished else max(estimate or 0, self.done)
        text = f"{self.transfer.target}: {human_bytes(self.done)}"
        if total and (estimate or finished):
            percent = 100 * self.done // total if finished else min(99, 100 * self.done // total)
            text += f" of {human_bytes(total)} ({percent}%)"
        text += f", {human_bytes(int(rate))}/s"
        if not finished and rate > 0 and self.done < total:
            left = int((total - self.done) / rate)
            text += f", ETA {left // 60}:{left % 60:02d}"
        return text
