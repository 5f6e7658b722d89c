"""``encroot.hashes.file_hashes``: what ``--verify=mount`` compares."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from encroot.hashes import file_hashes


def test_every_regular_file_is_hashed_by_its_relative_path(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"one")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"two" * 500_000)  # more than one read block
    assert file_hashes(str(tmp_path)) == {
        "a": hashlib.sha256(b"one").hexdigest(),
        os.path.join("sub", "b"): hashlib.sha256(b"two" * 500_000).hexdigest(),
    }


def test_symbolic_links_are_not_followed(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert set(file_hashes(str(tmp_path))) == {"real"}


def test_a_changed_byte_changes_the_hash(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    before = file_hashes(str(tmp_path))
    (tmp_path / "f").write_bytes(b"abd")
    assert file_hashes(str(tmp_path)) != before
