"""Fixtures for tests on real OpenZFS: throwaway pools on small sparse files.

These tests run as root inside the lab guest (``encroot lab test``); the
top-level conftest skips them, with the reason, anywhere else.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from encroot.keys import Key
from encroot.zfs import Zfs

_counter = itertools.count()
POOL_SIZE = "128M"

PoolFactory = Callable[..., str]


@pytest.fixture
def zfs() -> Zfs:
    return Zfs()


class PoolMaker:
    """Creates pools on sparse files and destroys them all in ``cleanup``."""

    def __init__(self, zfs: Zfs) -> None:
        self.zfs = zfs
        self.created: list[str] = []
        self.folder = Path(tempfile.mkdtemp(prefix="encroot-pools-", dir="/var/tmp"))

    def __call__(self, *, key: Key | None = None, no_features: bool = False,
                 vdevs: int = 1, layout: str | None = None,
                 root_properties: dict[str, str] | None = None,
                 pool_properties: dict[str, str] | None = None, size: str = POOL_SIZE) -> str:
        name = f"t{os.getpid()}x{next(_counter)}"
        files = []
        for index in range(vdevs):
            path = self.folder / f"{name}-{index}.img"
            with open(path, "wb") as handle:
                handle.truncate(_size_bytes(size))
            files.append(str(path))
        spec = ([layout] if layout else []) + files
        self.zfs.create_pool(name, spec, key=key, no_features=no_features,
                             root_properties={"mountpoint": f"/{name}",
                                              **(root_properties or {})},
                             pool_properties=pool_properties)
        self.created.append(name)
        return name

    def save(self, name: str) -> SavedPool:
        """Export pool ``name`` and keep its files, for ``restore`` to import copies of.

        Building a test's pools can cost more than the test (every ``zfs receive``
        of a tree waits for several transaction groups under emulation); a module
        builds once, saves, and each test restores an identical, independent copy.
        """
        listing = _run(["zpool", "list", "-v", "-H", "-P", name]).split()
        files = [Path(word) for word in listing if word.startswith("/")]
        mounted = [line.split("\t")[0] for line in _run(
            ["zfs", "list", "-H", "-r", "-o", "name,mounted", name]).splitlines()
            if line.endswith("\tyes")]
        _run(["zpool", "export", name])
        self.created.remove(name)
        saved = Path(tempfile.mkdtemp(prefix=f"{name}-saved-", dir=self.folder))
        for path in files:
            path.rename(saved / path.name)
        return SavedPool(name, saved, tuple(mounted))

    def restore(self, saved: SavedPool, passphrase: str = "") -> str:
        """Import a fresh copy of ``saved`` under its own name (one copy at a time).

        Keys load as ``zpool import -l`` loads them, ``passphrase`` answering the
        prompt; what was mounted at ``save`` is mounted again. The copy is
        destroyed at cleanup like the pools made here.
        """
        copy = Path(tempfile.mkdtemp(prefix=f"{saved.name}-copy-", dir=self.folder))
        for path in saved.folder.iterdir():
            subprocess.run(["cp", "--sparse=always", str(path), str(copy / path.name)],
                           check=True)
        done = subprocess.run(["zpool", "import", "-l", "-d", str(copy), saved.name],
                              input=passphrase.encode(), capture_output=True, check=False)
        if done.returncode != 0:
            raise AssertionError(f"restoring {saved.name}: {done.stderr.decode()}")
        self.created.append(saved.name)
        for dataset in saved.mounted:
            subprocess.run(["zfs", "mount", dataset], capture_output=True, check=False)
        return saved.name

    def cleanup(self) -> None:
        for name in reversed(self.created):
            subprocess.run(["zpool", "destroy", "-f", name], check=False, capture_output=True)
        shutil.rmtree(self.folder)


@dataclass(frozen=True)
class SavedPool:
    """An exported pool's vdev files and what was mounted in it (``PoolMaker.save``)."""

    name: str
    folder: Path
    mounted: tuple[str, ...]


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def make_pool(zfs: Zfs) -> Iterator[PoolFactory]:
    """Create pools on sparse files; every pool is destroyed after the test.

    ``make_pool(key=..., no_features=..., vdevs=2, layout="mirror", size="256M")``
    returns the pool's name.  Pool names are unique within the run.
    """
    maker = PoolMaker(zfs)
    yield maker
    maker.cleanup()


@pytest.fixture(scope="module")
def module_make_pool() -> Iterator[PoolFactory]:
    """Like ``make_pool``, for pools that a whole test module shares."""
    maker = PoolMaker(Zfs())
    yield maker
    maker.cleanup()


def _size_bytes(size: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(size[:-1]) * units[size[-1]]


@pytest.fixture
def pool(make_pool: PoolFactory) -> str:
    """One unencrypted pool."""
    return make_pool()
