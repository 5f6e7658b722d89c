"""``encroot.progress.human_bytes``: the byte counts of messages and the progress line."""

from __future__ import annotations

import pytest

from encroot.progress import human_bytes


@pytest.mark.parametrize(("count", "shown"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (3 * 1024 + 100, "3.1 KiB"),
    (5 << 20, "5.0 MiB"), (1 << 30, "1.0 GiB"), (3 << 40, "3.0 TiB"), (2048 << 40, "2048.0 TiB"),
])
def test_human_bytes_picks_the_largest_unit_below_1024(count: int, shown: str) -> None:
    assert human_bytes(count) == shown
