"""encroot change-key on real OpenZFS: every key-format transition with properties,
-i, -l, file keylocation, pbkdf2iters, refusals, batches and the strategy choice.

Interruption tests live in test_rotate_interrupted.py.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shlex
from collections.abc import Iterator

import pytest

from encroot import (
    Dataset,
    IncorrectKey,
    Key,
    RotationFailed,
    RotationRefused,
    StrategyUnavailable,
    change_keys,
)
from encroot.zfs import Zfs

from .conftest import PoolFactory
from .helpers import FAST_PBKDF2, encroot, prop, sh

pytestmark = [pytest.mark.zfs, pytest.mark.all_versions]

_names = itertools.count()


@pytest.fixture(scope="module")
def rpool(module_make_pool: PoolFactory) -> str:
    return module_make_pool(size="256M")


def fresh_key(keyformat: str) -> Key:
    if keyformat == "hex":
        return Key.hex(os.urandom(32).hex())
    if keyformat == "raw":
        return Key.raw(os.urandom(32))
    return Key.passphrase(os.urandom(12).hex())


def make_root(pool: str, key: Key, **props: str) -> str:
    """A new encryption root under ``pool`` with ``key`` and user properties."""
    name = f"{pool}/r{next(_names)}"
    options = {"pbkdf2iters": FAST_PBKDF2} if key.format == "passphrase" else {}
    Zfs().create(name, {**options, **props}, key=key)
    return name


def key_is(name: str, key: Key) -> bool:
    """``zfs load-key -n``; zfs rejects a key of another format before comparing."""
    return key.format == prop(name, "keyformat") and Zfs().check_key(name, key)


def remounts_with(name: str, key: Key) -> None:
    """Unload and reload the key, then mount: what the next boot does."""
    sh(f"zfs unmount '{name}' && zfs unload-key '{name}'")
    Zfs().load_key(name, key)
    sh(f"zfs mount '{name}' && test \"$(zfs get -H -o value mounted '{name}')\" = yes")


def journal_left(name: str) -> list[str]:
    out = sh(f"zfs get -H -o property -s local all '{name}'").stdout.split()
    return [p for p in out if p.startswith("encroot:")]


TRANSITIONS = list(itertools.product(("hex", "raw", "passphrase"), repeat=2))


@pytest.mark.parametrize(("old_format", "new_format"), TRANSITIONS,
                         ids=[f"{a}-to-{b}" for a, b in TRANSITIONS])
def test_every_keyformat_transition_with_properties(rpool: str, old_format: str,
                                                    new_format: str) -> None:
    with fresh_key(old_format) as old, fresh_key(new_format) as new:
        name = make_root(rpool, old, **{"oxide:epoch": "1"})
        change = Dataset(name).change_key(new).property("oxide:epoch", "2") \
            .property("oxide:rotated_at", "2026-11-22T12:00:00Z")
        if new_format == "passphrase":
            change.pbkdf2iters(int(FAST_PBKDF2))
        result = change.run()
        assert result.strategy == "journal"  # OpenZFS 2.1 to 2.4 have no atomic primitive
        assert result.properties == {"oxide:epoch": "2", "oxide:rotated_at": "2026-11-22T12:00:00Z"}
        assert prop(name, "keyformat") == new_format
        assert prop(name, "oxide:epoch") == "2"
        assert journal_left(name) == []
        assert key_is(name, new) and not key_is(name, old)
        remounts_with(name, new)


def test_inherit_with_properties(rpool: str) -> None:
    with fresh_key("hex") as parent_key, fresh_key("hex") as child_key:
        parent = make_root(rpool, parent_key)
        child = f"{parent}/c"
        Zfs().create(child, {"oxide:epoch": "7"}, key=child_key)
        result = Dataset(child).change_key().inherit().property("oxide:epoch", "8").run()
        assert result.encryptionroot == parent
        assert prop(child, "encryptionroot") == parent
        assert prop(child, "oxide:epoch") == "8"
        assert journal_left(child) == []


def test_load_key_first(rpool: str) -> None:
    with fresh_key("hex") as old, fresh_key("hex") as new:
        name = make_root(rpool, old)
        sh(f"zfs unmount '{name}' && zfs unload-key '{name}'")
        Dataset(name).change_key(new).load_key_first(old).property("oxide:epoch", "3").run()
        assert prop(name, "keystatus") == "available"
        assert prop(name, "oxide:epoch") == "3"
        assert key_is(name, new)


def test_wrong_current_key_changes_nothing(rpool: str) -> None:
    with fresh_key("hex") as old, fresh_key("hex") as wrong, fresh_key("hex") as new:
        name = make_root(rpool, old, **{"oxide:epoch": "1"})
        sh(f"zfs unmount '{name}' && zfs unload-key '{name}'")
        with pytest.raises(IncorrectKey):
            Dataset(name).change_key(new).load_key_first(wrong).property("oxide:epoch", "2").run()
        assert prop(name, "keystatus") == "unavailable"
        assert prop(name, "oxide:epoch") == "1"
        assert journal_left(name) == []
        assert key_is(name, old)


def test_keylocation_file(rpool: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("keys")
    path = folder / "new.key"
    with fresh_key("hex") as old, fresh_key("hex") as new:
        path.write_bytes(bytes(new.material()))
        name = make_root(rpool, old)
        result = Dataset(name).change_key(new).keylocation(f"file://{path}") \
            .property("oxide:epoch", "2").run()
        assert result.ok
        assert prop(name, "keylocation") == f"file://{path}"
        assert key_is(name, new)
        sh(f"zfs unmount '{name}' && zfs unload-key '{name}' && zfs load-key '{name}'")


def test_keylocation_file_holding_another_key_is_refused(
        rpool: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("keys") / "other.key"
    path.write_text(os.urandom(32).hex())
    with fresh_key("hex") as old, fresh_key("hex") as new:
        name = make_root(rpool, old, **{"oxide:epoch": "1"})
        with pytest.raises(RotationRefused, match="holds a different key"):
            Dataset(name).change_key(new).keylocation(f"file://{path}") \
                .property("oxide:epoch", "2").run()
        assert key_is(name, old) and prop(name, "oxide:epoch") == "1"
        assert journal_left(name) == []


def test_pbkdf2iters(rpool: str) -> None:
    with fresh_key("passphrase") as old, fresh_key("passphrase") as new:
        name = make_root(rpool, old)
        Dataset(name).change_key(new).pbkdf2iters(123456).property("oxide:epoch", "2").run()
        assert prop(name, "pbkdf2iters") == "123456"
        assert key_is(name, new)


def test_refusals_change_nothing(rpool: str) -> None:
    with fresh_key("hex") as key, fresh_key("hex") as new:
        plain = f"{rpool}/plain{next(_names)}"
        sh(f"zfs create -o encryption=off '{plain}'")
        with pytest.raises(RotationRefused, match="not encrypted"):
            Dataset(plain).change_key(new).property("oxide:epoch", "2").run()
        root = make_root(rpool, key)
        child = f"{root}/child"
        sh(f"zfs create '{child}'")
        with pytest.raises(RotationRefused, match="not an encryption root"):
            Dataset(child).change_key(new).property("oxide:epoch", "2").run()
        sh(f"zfs unmount '{root}' && zfs unload-key -r '{root}'")
        with pytest.raises(RotationRefused, match="key not loaded"):
            Dataset(root).change_key(new).property("oxide:epoch", "2").run()
        for name in (plain, root, child):
            assert prop(name, "oxide:epoch") == "-"
            assert journal_left(name) == []
        assert key_is(root, key)


def test_native_strategy_is_detected_absent(rpool: str) -> None:
    """OpenZFS 2.1 to 2.4 refuse user properties in change-key; asking for native fails."""
    with fresh_key("hex") as key, fresh_key("hex") as new:
        name = make_root(rpool, key)
        assert Zfs().change_key_accepts_user_properties(name) is False
        for strategy in ("native", "channel-program"):
            with pytest.raises(StrategyUnavailable, match=strategy):
                Dataset(name).change_key(new).strategy(strategy) \
                    .property("oxide:epoch", "2").run()
        assert key_is(name, key) and prop(name, "oxide:epoch") == "-"


def test_without_properties_it_is_plain_change_key(rpool: str) -> None:
    with fresh_key("hex") as key, fresh_key("raw") as new:
        name = make_root(rpool, key)
        result = Dataset(name).change_key(new).run()
        assert result.strategy == "plain"
        assert key_is(name, new)


@pytest.fixture
def three_roots(rpool: str) -> Iterator[tuple[list[str], list[Key], list[Key]]]:
    old = [fresh_key("hex") for _ in range(3)]
    new = [fresh_key("hex") for _ in range(3)]
    names = [make_root(rpool, key, **{"oxide:epoch": "1"}) for key in old]
    yield names, old, new
    for key in old + new:
        key.close()


Roots = tuple[list[str], list[Key], list[Key]]


def test_batch_rotates_all(three_roots: Roots) -> None:
    names, _old, new = three_roots
    results = change_keys(Dataset(n).change_key(k).property("oxide:epoch", "2")
                          for n, k in zip(names, new, strict=True))
    assert [r.ok for r in results] == [True, True, True]
    for name, key in zip(names, new, strict=True):
        assert prop(name, "oxide:epoch") == "2" and key_is(name, key)
        assert journal_left(name) == []


def test_batch_failure_leaves_others_whole(
        three_roots: Roots, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A change-key that fails on one dataset: that one untouched, the others fully rotated."""
    names, old, new = three_roots
    wrapper = tmp_path_factory.mktemp("bin") / "zfs"
    real = sh("command -v zfs").stdout.strip()
    wrapper.write_text("#!/bin/bash\n"
                       f'if [ "$1" = change-key ] && [ "${{@: -1}}" = "{names[1]}" ]'
                       ' && [ "$3" != atime=on ]; then\n'
                       '  echo "cannot change key: simulated failure" >&2; exit 1\nfi\n'
                       f'exec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("ENCROOT_ZFS", str(wrapper))
    with pytest.raises(RotationFailed) as failed:
        change_keys(Dataset(n).change_key(k).property("oxide:epoch", "2")
                    for n, k in zip(names, new, strict=True))
    assert [r.ok for r in failed.value.results] == [True, False, True]
    for index, name in enumerate(names):
        assert journal_left(name) == []
        expected_key, epoch = (old[1], "1") if index == 1 else (new[index], "2")
        assert prop(name, "oxide:epoch") == epoch
        assert key_is(name, expected_key)


def test_cli_change_key_and_get(rpool: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("clikeys")
    with fresh_key("hex") as old:
        name = make_root(rpool, old)
    new_hex = os.urandom(32).hex()
    (folder / "new.key").write_text(new_hex)
    dry = encroot(f"change-key -n --json -o oxide:epoch=5 --key-file {folder}/new.key {name}")
    assert dry.returncode == 0, dry.stderr
    assert '"strategy": "journal"' in dry.stdout and prop(name, "oxide:epoch") == "-"
    done = encroot(f"change-key -o oxide:epoch=5 --key-file {folder}/new.key {name}")
    assert done.returncode == 0, done.stderr
    assert "strategy journal" in done.stdout
    got = encroot(f"get {name} oxide:epoch")
    assert got.stdout.strip() == "oxide:epoch\t5"
    with Key.hex(new_hex) as new:
        assert key_is(name, new)
    bad = encroot(f"change-key -o oxide:Epoch=6 --key-file {folder}/new.key {name}")
    assert bad.returncode == 2 and "oxide:Epoch" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_cli_change_key_of_a_name_with_spaces_and_every_allowed_sign(
        rpool: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A dataset named with a space, ':', '.', '-' and '_' (all ZFS allows besides
    letters and digits): the rotation, its property and `encroot get` work on it.  A
    local name holding ':' is written ./NAME (HOST:DATASET names a remote one); without
    it, a one-line refusal that says so."""
    folder = tmp_path_factory.mktemp("oddkeys")
    name = f"{rpool}/my data:v1.2-3_4 x"
    with fresh_key("hex") as old:
        Zfs().create(name, {}, key=old)
    new_hex = os.urandom(32).hex()
    (folder / "new.key").write_text(new_hex)
    quoted, local = shlex.quote(name), shlex.quote(f"./{name}")
    bare = encroot(f"change-key -o oxide:epoch=7 --key-file {folder}/new.key {quoted}")
    assert bare.returncode == 2 and "./NAME" in bare.stderr
    assert len(bare.stderr.strip().splitlines()) == 1
    dry = encroot(f"change-key -n -o oxide:epoch=7 --key-file {folder}/new.key {local}")
    assert dry.returncode == 0, dry.stderr
    assert quoted in dry.stdout, dry.stdout  # the plan's commands paste as shell lines
    assert prop(name, "oxide:epoch") == "-"
    done = encroot(f"change-key -o oxide:epoch=7 --key-file {folder}/new.key {local}")
    assert done.returncode == 0, done.stderr
    assert prop(name, "oxide:epoch") == "7"
    got = encroot(f"get {local} oxide:epoch")
    assert got.stdout.strip() == "oxide:epoch\t7", got.stderr
    with Key.hex(new_hex) as new:
        assert key_is(name, new)


def test_awaitable_form(rpool: str) -> None:
    async def rotate(name: str, key: Key) -> str:
        result = await Dataset(name).change_key(key).properties({"oxide:epoch": "2"})
        return result.strategy

    with fresh_key("hex") as old, fresh_key("hex") as new:
        name = make_root(rpool, old)
        assert asyncio.run(rotate(name, new)) == "journal"
        assert prop(name, "oxide:epoch") == "2" and key_is(name, new)


def test_cli_batch_with_a_key_directory(rpool: str,
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("keydir")
    names, keys = [], {}
    for _ in range(2):
        with fresh_key("hex") as old:
            names.append(make_root(rpool, old))
        keys[names[-1]] = os.urandom(32).hex()
        path = folder / names[-1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(keys[names[-1]])
    done = encroot(f"change-key --json --key-dir {folder} -o oxide:epoch=9 {' '.join(names)}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count('"ok": true') == 2
    for name in names:
        with Key.hex(keys[name]) as key:
            assert key_is(name, key) and prop(name, "oxide:epoch") == "9"


def test_cli_load_key_first_from_a_file(rpool: str,
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("clil")
    old_hex, new_hex = os.urandom(32).hex(), os.urandom(32).hex()
    (folder / "old").write_text(old_hex)
    (folder / "new").write_text(new_hex)
    with Key.hex(old_hex) as old:
        name = make_root(rpool, old)
    sh(f"zfs unmount '{name}' && zfs unload-key '{name}'")
    done = encroot(f"change-key -l --current-key-file {folder}/old --key-file {folder}/new "
                   f"-o oxide:epoch=4 {name}")
    assert done.returncode == 0, done.stderr
    assert prop(name, "keystatus") == "available" and prop(name, "oxide:epoch") == "4"
    with Key.hex(new_hex) as new:
        assert key_is(name, new)
