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

from .helpers import FAST_PBKDF2

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
        # PBKDF2's 350000 default rounds take 4 s per key derivation under the lab's
        # emulation (100000: 1.3 s), paid at creation and at every load-key.
        iterations = {"pbkdf2iters": FAST_PBKDF2} if key and key.format == "passphrase" else {}
        self.zfs.create_pool(name, spec, key=key, no_features=no_features,
                             root_properties={"mountpoint": f"/{name}", **iterations,
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
        rows = [line.split("\t") for line in _run(
            ["zfs", "get", "-H", "-p", "-r", "-t", "filesystem,volume", "-o",
             "name,property,value", "mounted,encryptionroot,keystatus,keylocation",
             name]).splitlines()]
        props: dict[str, dict[str, str]] = {}
        for dataset, prop, value in rows:
            props.setdefault(dataset, {})[prop] = value
        keys = tuple((dataset, p["keylocation"]) for dataset, p in props.items()
                     if p["encryptionroot"] == dataset and p["keystatus"] == "available")
        mounted = tuple(dataset for dataset, p in props.items() if p["mounted"] == "yes")
        _run(["zpool", "export", name])
        self.created.remove(name)
        saved = Path(tempfile.mkdtemp(prefix=f"{name}-saved-", dir=self.folder))
        for path in files:
            path.rename(saved / path.name)
        return SavedPool(name, saved, keys, mounted)

    def restore(self, saved: SavedPool, passphrase: str = "") -> str:
        """Import a fresh copy of ``saved`` under its own name (one copy at a time).

        The keys loaded at ``save`` are loaded again (``passphrase`` answers each
        prompt), and what was mounted is mounted again. The copy is destroyed at
        cleanup like the pools made here.
        """
        copy = Path(tempfile.mkdtemp(prefix=f"{saved.name}-copy-", dir=self.folder))
        for path in saved.folder.iterdir():
            # cp finds the holes of these sparse files and copies only the data
            _run(["cp", str(path), str(copy / path.name)])
        _run(["zpool", "import", "-N", "-d", str(copy), saved.name])
        self.created.append(saved.name)
        for root, location in saved.keys:
            subprocess.run(["zfs", "load-key", root], check=True, capture_output=True,
                           input=passphrase.encode() if location == "prompt" else None)
        for dataset in saved.mounted:
            _run(["zfs", "mount", dataset])
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
    keys: tuple[tuple[str, str], ...]  # (encryption root, keylocation) loaded at save
    mounted: tuple[str, ...]  # in zfs list order: parents first


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
