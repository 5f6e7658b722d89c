"""encroot change-key killed (SIGKILL) at each step of the journal protocol, then recovered.

A wrapper put in place of ``zfs`` (through ``ENCROOT_ZFS``) kills encroot,
its parent, at a chosen point: before the change-key starts, right after it
finished, right after the journal's commit.  ``encroot recover`` must then
leave key and properties in agreement, and the dataset must mount with the
key the properties describe.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from encroot import Key
from encroot.zfs import Zfs

from .conftest import PoolFactory
from .helpers import FAST_PBKDF2, encroot, prop, sh

pytestmark = pytest.mark.zfs

_names = itertools.count()

# When the wrapper kills encroot: a shell condition on the zfs arguments, and
# whether the real zfs runs first.
KILL_POINTS = {
    "before-change-key": ('[ "$1" = change-key ] && [ "$3" != atime=on ]', False),
    "after-change-key": ('[ "$1" = change-key ] && [ "$3" != atime=on ]', True),
    "after-commit": ('[ "$1" = program ] && [ "$3" != -n ] && [ -e "$STATE/intent" ]', True),
}


def killer(folder: Path, point: str) -> Path:
    condition, run_first = KILL_POINTS[point]
    real = sh("command -v zfs").stdout.strip()
    script = folder / "zfs"
    script.write_text(f"""#!/bin/bash
STATE={folder}
if [ "$1" = program ] && [ "$3" != -n ] && [ ! -e "$STATE/intent" ]; then
  {real} "$@"; rc=$?; touch "$STATE/intent"; exit $rc
fi
if {condition}; then
  {f'{real} "$@" < /dev/stdin; rc=$?' if run_first else 'rc=137'}
  kill -9 $PPID
  exit $rc
fi
exec {real} "$@"
""")
    script.chmod(0o755)
    return script


@pytest.fixture(scope="module")
def kpool(module_make_pool: PoolFactory) -> str:
    return module_make_pool(size="256M")


def key_text(keyformat: str) -> bytes:
    return os.urandom(32).hex().encode() if keyformat == "hex" else os.urandom(10).hex().encode()


def interrupted_rotation(pool: str, folder: Path, keyformat: str, point: str
                         ) -> tuple[str, Path, Path]:
    """An encryption root with oxide:epoch=1 whose rotation to epoch 2 was killed at ``point``."""
    name = f"{pool}/k{next(_names)}"
    old, new = folder / "old.key", folder / "new.key"
    old.write_bytes(key_text(keyformat))
    new.write_bytes(key_text(keyformat))
    iters = f"-o pbkdf2iters={FAST_PBKDF2}" if keyformat == "passphrase" else ""
    sh(f"zfs create -o encryption=on -o keyformat={keyformat} -o keylocation=prompt {iters} "
       f"-o oxide:epoch=1 {name} < {old}")
    wrapper = killer(folder, point)
    extra = f"-o pbkdf2iters={FAST_PBKDF2}" if keyformat == "passphrase" else ""
    run = sh(f"ENCROOT_ZFS={wrapper} encroot change-key -o oxide:epoch=2 {extra} "
             f"--key-file {new} {name}", check=False)
    assert run.returncode == -9 or run.returncode == 137, (run.returncode, run.stderr)
    return name, old, new


def agrees(name: str, keys: dict[str, Path]) -> str:
    """Key and epoch agree ({epoch: key file}), and the dataset mounts with the epoch's key."""
    epoch = prop(name, "oxide:epoch")
    key_file = keys[epoch]
    keyformat = prop(name, "keyformat")
    leftovers = [p for p in sh(f"zfs get -H -o property -s local all {name}").stdout.split()
                 if p.startswith("encroot:")]
    assert leftovers == []
    sh(f"zfs unmount {name} 2>/dev/null || true; zfs unload-key {name}")
    with Key.from_file(key_file, keyformat) as key:  # type: ignore[arg-type]
        Zfs().load_key(name, key)
    sh(f"zfs mount {name} && test \"$(zfs get -H -o value mounted {name})\" = yes")
    return epoch


@pytest.mark.parametrize("keyformat", ["hex", "passphrase"])
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_killed_rotation_is_recovered(kpool: str, tmp_path: Path, keyformat: str,
                                      point: str) -> None:
    name, old, new = interrupted_rotation(kpool, tmp_path, keyformat, point)
    pending = prop(name, "encroot:rotation") != "-"
    assert pending == (point != "after-commit")
    recovered = encroot(f"recover --json {name}")
    if keyformat == "hex" and point == "before-change-key":
        # Same format, no change-key in history: only a key can tell.
        assert recovered.returncode == 1 and "--new-key-file" in recovered.stderr
        got = encroot(f"get {name}")
        assert got.returncode == 1 and "recover" in got.stderr
        recovered = encroot(f"recover --json --old-key-file {old} {name}")
    assert recovered.returncode == 0, recovered.stderr
    expected_action = {"before-change-key": "aborted", "after-change-key": "committed",
                       "after-commit": "none"}[point]
    assert f'"action": "{expected_action}"' in recovered.stdout
    epoch = agrees(name, {"1": old, "2": new})
    assert epoch == ("1" if point == "before-change-key" else "2")


@pytest.mark.all_versions
def test_recover_with_the_new_key(kpool: str, tmp_path: Path) -> None:
    name, old, new = interrupted_rotation(kpool, tmp_path, "hex", "after-change-key")
    recovered = encroot(f"recover --new-key-file {new} {name}")
    assert recovered.returncode == 0 and "committed" in recovered.stdout
    assert "load-key -n" in recovered.stdout
    assert agrees(name, {"1": old, "2": new}) == "2"


@pytest.mark.all_versions
def test_next_change_key_finishes_the_pending_rotation(kpool: str, tmp_path: Path) -> None:
    name, old, new = interrupted_rotation(kpool, tmp_path, "passphrase", "after-change-key")
    newer = tmp_path / "newer.key"
    newer.write_bytes(key_text("passphrase"))
    done = encroot(f"change-key -o oxide:epoch=3 -o pbkdf2iters={FAST_PBKDF2} "
                   f"--key-file {newer} {name}")
    assert done.returncode == 0, done.stderr
    assert agrees(name, {"1": old, "2": new, "3": newer}) == "3"
