"""Fixtures for tests on real OpenZFS: throwaway pools on small sparse files.

These tests run as root inside the lab guest (``encroot lab test``); the
top-level conftest skips them, with the reason, anywhere else.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
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

    def cleanup(self) -> None:
        for name in reversed(self.created):
            subprocess.run(["zpool", "destroy", "-f", name], check=False, capture_output=True)
        for path in self.folder.iterdir():
            path.unlink()
        self.folder.rmdir()


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
