"""`encroot receive --allow-encryption-change` with zfs receive's other forms: -d, -e,
FILESYSTEM@SNAPSHOT targets, -s resume, on real OpenZFS.

Where the stream lands is checked against zfs itself: the same stream received by
plain `zfs receive` with the same flag into an empty reference pool lands at the
same names (relative to the pool), so encroot's derivation is zfs's.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from .conftest import PoolFactory
from .helpers import (
    create_encrypted,
    encroot,
    exists,
    names_under,
    prop,
    sh,
    snapshot_guids,
    write_files,
)

# every version: where zfs lands a -d/-e stream is zfs's own derivation, per version
pytestmark = [pytest.mark.zfs, pytest.mark.all_versions]

FLAGS = "receive -F -u --allow-encryption-change"
_names = itertools.count()


@pytest.fixture(scope="module")
def pools(module_make_pool: PoolFactory) -> tuple[str, str, str]:
    """A source, a destination and an empty reference pool for plain zfs receive."""
    return module_make_pool(), module_make_pool(), module_make_pool()


def source_tree(src: str, *, child: bool = False) -> str:
    """An encrypted src/aN/fs (and fs/child inheriting its key) with a file and @A."""
    top = f"{src}/a{next(_names)}"
    sh(f"zfs create {top}")
    fs = f"{top}/fs"
    create_encrypted(fs)
    write_files(f"/{fs}", {"f": b"new\n"})
    if child:
        sh(f"zfs create {fs}/child")
    sh(f"zfs snapshot -r {fs}@A")
    return fs


def old_tree(name: str, *, child: bool = False) -> None:
    """An unencrypted target (with a child) holding old data, mounted."""
    sh(f"zfs create -p {name} && echo old > /{name}/old")
    if child:
        sh(f"zfs create {name}/child")


def relative(pool: str, names: list[str]) -> list[str]:
    return sorted(n[len(pool):] for n in names)


def lands_with_zfs(ref: str, send: str, flag: str) -> list[str]:
    """Names (relative to the pool) plain zfs receive FLAG gives the stream's datasets and
    snapshots in pool ``ref`` (parents -d creates on the way are left out)."""
    before = set(names_under(ref))
    sh(f"{send} | zfs receive -u {flag} {ref}")
    added = [n for n in names_under(ref) if n not in before]
    sh(f"zfs destroy -r {min(added, key=len)}")
    top = min((n.split("@")[0] for n in added if "@" in n), key=len)
    return relative(ref, [n for n in added if n == top or n.startswith((top + "/", top + "@"))])


def assert_replaced(target: str, source: str) -> None:
    assert prop(target, "encryption") != "off"
    assert prop(target, "encryptionroot") == target
    assert snapshot_guids(target) == snapshot_guids(source)
    assert not [n for n in names_under(target.split("/")[0]) if ".encroot-" in n]


@pytest.mark.parametrize("flag", ["-d", "-e"])
def test_d_and_e_replace_where_zfs_would_land_a_raw_package(pools: tuple[str, str, str],
                                                            flag: str) -> None:
    src, dst, ref = pools
    fs = source_tree(src, child=True)
    send = f"zfs send -w -R {fs}@A"
    lands = lands_with_zfs(ref, send, flag)
    target = dst + lands[0]  # the top: sorted first
    old_tree(target, child=True)
    done = encroot(f"{FLAGS} {flag} {dst}", stdin_from=send)
    assert done.returncode == 0, done.stderr
    new = [n for n in names_under(dst) if n == target or n.startswith(target + "/")
           or n.startswith(target + "@")]
    assert relative(dst, new) == lands
    assert_replaced(target, fs)
    assert prop(f"{target}/child", "encryptionroot") == target


def test_d_creates_a_missing_target_and_its_parents_as_zfs_does(
        pools: tuple[str, str, str]) -> None:
    src, dst, ref = pools
    fs = source_tree(src)
    send = f"zfs send -w {fs}@A"
    lands = lands_with_zfs(ref, send, "-d")
    done = encroot(f"{FLAGS} -d {dst}", stdin_from=send)
    assert done.returncode == 0, done.stderr
    target = dst + lands[0]
    assert exists(target) and snapshot_guids(target) == snapshot_guids(fs)


def test_d_below_a_missing_destination_is_refused_and_changes_nothing(
        pools: tuple[str, str, str]) -> None:
    src, dst, _ = pools
    fs = source_tree(src)
    before = names_under(dst)
    done = encroot(f"{FLAGS} -d {dst}/missing", stdin_from=f"zfs send -w {fs}@A")
    assert done.returncode == 1
    assert f"specified fs ({dst}/missing) does not exist" in done.stderr
    assert "nothing was changed" in done.stderr and names_under(dst) == before


def test_a_snapshot_target_names_the_received_snapshot(pools: tuple[str, str, str]) -> None:
    src, dst, _ = pools
    fs = source_tree(src)
    target = f"{dst}/snap{next(_names)}"
    old_tree(target)
    done = encroot(f"{FLAGS} {target}@mine", stdin_from=f"zfs send -w {fs}@A")
    assert done.returncode == 0, done.stderr
    assert prop(f"{target}@mine", "guid") == prop(f"{fs}@A", "guid")
    assert prop(target, "encryptionroot") == target and not exists(f"{target}@A")


def test_a_cut_stream_with_s_and_d_resumes_into_the_derived_target(
        pools: tuple[str, str, str], tmp_path: Path) -> None:
    src, dst, _ = pools
    fs = source_tree(src)
    write_files(f"/{fs}", {"big": os.urandom(1 << 20)})  # incompressible: cut mid-stream
    sh(f"zfs snapshot {fs}@B")
    stream = tmp_path / "s"
    sh(f"zfs send -w {fs}@B > {stream}")
    target = dst + fs[len(src):]
    old_tree(target)
    cut = encroot(f"{FLAGS} -s -d {dst}", stdin_from=f"head -c 300000 {stream}")
    assert cut.returncode != 0
    token = prop(f"{target}.encroot-recv", "receive_resume_token")
    assert token not in ("-", "") and prop(target, "encryption") == "off"
    resumed = encroot(f"{FLAGS} -s -d {dst}", stdin_from=f"zfs send -t {token}")
    assert resumed.returncode == 0, resumed.stderr
    assert prop(target, "encryptionroot") == target
    assert prop(f"{target}@B", "guid") == prop(f"{fs}@B", "guid")
    assert not [n for n in names_under(dst) if ".encroot-" in n]
