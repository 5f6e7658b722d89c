"""encroot doctor on real OpenZFS: each hazard built for real, found with its severity and
fix; a healthy pool has no findings; --fix repairs exactly the safe set and leaves a pool
whose keys unload, reload and mount."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import PoolFactory
from .helpers import FAST_PBKDF2, encroot, exists, prop, sh
from .test_receive_interrupted import KILLER
from .test_rotate_interrupted import interrupted_rotation

pytestmark = pytest.mark.zfs


def hex_key(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text(os.urandom(32).hex())
    return path


def healthy_root(pool: str, folder: Path, name: str = "enc") -> str:
    """An encryption root keyed from a file, with an inheriting child: nothing to report."""
    key = hex_key(folder, f"{name}.key")
    sh(f"zfs create -o encryption=on -o keyformat=hex -o keylocation=file://{key} {pool}/{name}")
    sh(f"zfs create {pool}/{name}/child")
    return f"{pool}/{name}"


def doctor(*args: str) -> tuple[int, list[dict[str, str]], dict[str, object]]:
    done = encroot("doctor --json " + " ".join(args))
    document = json.loads(done.stdout)
    return done.returncode, document["findings"], document


def found(findings: list[dict[str, str]]) -> set[tuple[str, str, str]]:
    return {(f["dataset"], f["code"], f["severity"]) for f in findings}


@pytest.mark.all_versions
def test_a_healthy_pool_has_no_findings(make_pool: PoolFactory, tmp_path: Path) -> None:
    pool = make_pool()
    healthy_root(pool, tmp_path)
    status, findings, _ = doctor(pool)
    assert (status, findings) == (0, [])
    missing = encroot("doctor nosuchpool")
    assert missing.returncode == 2 and "could not run" in missing.stderr
    table = encroot(f"status {pool}")
    assert table.returncode == 0
    assert any(line.split()[:2] == [f"{pool}/enc/child", "aes-256-gcm"]
               and line.split()[-1] == "inherited" for line in table.stdout.splitlines())


@pytest.mark.all_versions
def test_each_hazard_is_found(make_pool: PoolFactory, tmp_path: Path) -> None:
    pool = make_pool(size="256M")
    enc = healthy_root(pool, tmp_path)
    # keylocation pointing at a missing file, and at a file of the wrong length
    for name, content in (("missing", None), ("short", "abcd")):
        key = hex_key(tmp_path, f"{name}.key")
        sh(f"zfs create -o encryption=on -o keyformat=hex -o keylocation=file://{key} "
           f"{pool}/{name}")
        if content is None:
            key.unlink()
        else:
            key.write_text(content)
    # an unencrypted child under an encrypted parent
    sh(f"zfs create -o encryption=off {enc}/plain")
    # raw receive without -R: the child becomes its own root
    src_key = hex_key(tmp_path, "src.key")
    sh(f"zfs create -o encryption=on -o keyformat=hex -o keylocation=file://{src_key} "
       f"{pool}/src && zfs create {pool}/src/kid && zfs snapshot -r {pool}/src@a")
    sh(f"zfs send -w {pool}/src/kid@a | zfs receive -u {enc}/kid")
    # a weak passphrase root that prompts at boot
    sh(f"zfs create -o encryption=on -o keyformat=passphrase -o keylocation=prompt "
       f"-o pbkdf2iters={FAST_PBKDF2} {pool}/weak", stdin=b"correct horse battery\n")
    status, findings, _ = doctor(pool)
    assert status == 1
    expected = {
        (f"{pool}/missing", "keylocation-unusable", "error"),
        (f"{pool}/short", "keylocation-unusable", "error"),
        (f"{enc}/plain", "plaintext-under-encrypted", "warning"),
        (f"{enc}/kid", "own-root-could-inherit", "warning"),
        (f"{enc}/kid", "key-unavailable", "warning"),
        (f"{enc}/kid", "prompt-key-at-boot", "warning"),
        (f"{pool}/weak", "weak-pbkdf2iters", "warning"),
        (f"{pool}/weak", "prompt-key-at-boot", "warning"),
    }
    assert found(findings) == expected
    fixes = {f["code"]: f["fix"] for f in findings}
    assert fixes["own-root-could-inherit"] == f"zfs change-key -i {enc}/kid"
    assert fixes["weak-pbkdf2iters"] == f"zfs change-key -o pbkdf2iters=350000 {pool}/weak"


@pytest.mark.all_versions
def test_reparented_raw_replica_is_an_error(make_pool: PoolFactory, tmp_path: Path) -> None:
    pool = make_pool(size="256M")
    enc = healthy_root(pool, tmp_path)
    src_key = hex_key(tmp_path, "src.key")
    sh(f"zfs create -o encryption=on -o keyformat=hex -o keylocation=file://{src_key} "
       f"{pool}/src && zfs snapshot {pool}/src@a")
    sh(f"zfs send -w {pool}/src@a | zfs receive -u {enc}/rep")
    sh(f"zfs load-key -L file://{src_key} {enc}/rep && zfs change-key -i {enc}/rep")
    _, findings, _ = doctor(enc)
    assert (f"{enc}/rep", "raw-replica-reparented", "error") in found(findings)
    # the raw incremental the finding warns about: zfs takes it, and it is still reported
    sh(f"zfs snapshot {pool}/src@b")
    sh(f"zfs send -w -i @a {pool}/src@b | zfs receive -u {enc}/rep", check=False)
    _, findings, _ = doctor(enc)
    assert (f"{enc}/rep", "raw-replica-reparented", "error") in found(findings)


def test_fix_repairs_exactly_the_safe_set(make_pool: PoolFactory, tmp_path: Path) -> None:
    pool = make_pool(size="256M")
    enc = healthy_root(pool, tmp_path)
    # fixable: a separately keyed child with the parent's key format and location kind
    sep_key = hex_key(tmp_path, "sep.key")
    sh(f"zfs create -o encryption=on -o keyformat=hex -o keylocation=file://{sep_key} "
       f"{enc}/sep && zfs set keylocation=file://{tmp_path}/enc.key {enc}/sep")
    # fixable: a journal marker left by a killed rotation
    rotated, _old, _new = interrupted_rotation(pool, tmp_path, "passphrase",
                                               "after-change-key")
    # fixable: a killed encroot receive (verified temporary, not swapped; killed before its
    # 5th change, the first rename: the old tree is unmounted, which --fix needs)
    sh(f"zfs create {pool}/target && zfs create -o encryption=on -o keyformat=hex "
       f"-o keylocation=file://{hex_key(tmp_path, 'r.key')} {pool}/rsrc "
       f"&& zfs snapshot {pool}/rsrc@s && zfs send -w {pool}/rsrc@s > {tmp_path}/stream")
    killed = subprocess.run([sys.executable, "-c", KILLER, "5", f"{pool}/target",
                             f"{tmp_path}/stream"], capture_output=True, check=False)
    assert killed.returncode == -9 and exists(f"{pool}/target.encroot-recv")
    # not fixable: a raw-received child (re-parenting it invites OpenZFS 12614)
    sh(f"zfs create -o encryption=on -o keyformat=hex "
       f"-o keylocation=file://{hex_key(tmp_path, 'k2.key')} {pool}/src2 "
       f"&& zfs snapshot {pool}/src2@a && zfs send -w {pool}/src2@a | zfs receive -u {enc}/raw")
    sh(f"zfs load-key -L file://{tmp_path}/k2.key {enc}/raw")

    _, before, _ = doctor(pool)
    codes_before = found(before)
    assert (f"{enc}/sep", "own-root-could-inherit", "warning") in codes_before
    assert (rotated, "pending-rotation", "error") in codes_before
    # one finding per interrupted receive, on the first of its marked datasets: the old
    # tree, which carries its replaced marker from when the new one was verified on
    assert (f"{pool}/target", "leftover-temporary", "warning") in codes_before
    assert (f"{pool}/target.encroot-recv", "leftover-temporary", "warning") not in codes_before
    assert (f"{enc}/raw", "own-root-could-inherit", "warning") in codes_before

    dry = encroot(f"doctor --json --fix -n {pool}")
    planned = sorted(f["command"] for f in json.loads(dry.stdout)["fixes"])
    assert planned == sorted([f"zfs change-key -i {enc}/sep", f"encroot recover {rotated}",
                              f"encroot receive --recover {pool}/target"])
    assert prop(f"{enc}/sep", "encryptionroot") == f"{enc}/sep"

    _, after, document = doctor("--fix", pool)
    fixes = document["fixes"]
    assert isinstance(fixes, list) and all(f["done"] for f in fixes), fixes
    assert prop(f"{enc}/sep", "encryptionroot") == enc
    assert prop(rotated, "encroot:rotation") == "-"
    assert not exists(f"{pool}/target.encroot-recv")
    assert prop(f"{pool}/target", "encryption") != "off"
    remaining = {(d, c) for d, c, _ in found(after)}
    assert (f"{enc}/raw", "own-root-could-inherit") in remaining
    assert not {c for _, c in remaining} & {"pending-rotation", "leftover-temporary"}
    assert (f"{enc}/sep", "own-root-could-inherit") not in remaining
    # the repaired tree survives a key unload and reload
    sh(f"zfs unmount {enc}; zfs unload-key -r {enc} && zfs load-key {enc} "
       f"&& zfs load-key -L file://{tmp_path}/k2.key {enc}/raw "
       f"&& zfs mount {enc} && zfs mount {enc}/child && zfs mount {enc}/sep")
    assert prop(f"{enc}/sep", "mounted") == "yes" and prop(f"{enc}/sep", "keystatus") == \
        "available"
