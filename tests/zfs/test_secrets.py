"""Keys given to the command layer never appear in argv, environment, history, logs or errors.

Each test makes a fresh random key, runs real zfs commands through the
layer, and looks for the key (as hex text in both cases, and as raw bytes)
in every process's /proc cmdline and environ *while zfs is running and
waiting for its key*, in ``zpool history -il``, in the verbose log, in error
texts and in small files under /tmp and /var/tmp.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from encroot import Dataset
from encroot import errors as e
from encroot.keys import Key
from encroot.zfs import Command, SubprocessRunner, Zfs

from .conftest import PoolFactory
from .helpers import process_files, prop, sh, unmount_tree

pytestmark = pytest.mark.zfs


def needles_for(key_bytes: bytes, keyformat: str) -> list[bytes]:
    if keyformat == "passphrase":
        return [key_bytes]
    raw = bytes.fromhex(key_bytes.decode()) if keyformat == "hex" else key_bytes
    return [raw, raw.hex().encode(), raw.hex().upper().encode()]


@dataclass
class ProcScanner:
    """Scans /proc of every process when a zfs command that takes a key has started."""

    needles: list[bytes]
    leaks: list[str] = field(default_factory=list)
    saw_child: list[str] = field(default_factory=list)

    def __call__(self, command: Command, process: subprocess.Popen[bytes]) -> None:
        if not command.secret_stdin and command.key_fd is None:
            return
        time.sleep(0.3)  # let zfs start and block reading its key from stdin
        for pid, part, data in process_files(("cmdline", "environ")):
            if any(needle in data for needle in self.needles):
                self.leaks.append(f"pid {pid} {part}")
            if part == "cmdline" and pid == process.pid:
                self.saw_child.append(data.replace(b"\0", b" ").decode())


def scan_files(needles: list[bytes]) -> list[str]:
    found = []
    for top in ("/tmp", "/var/tmp", "/root"):
        for dirpath, _, files in os.walk(top):
            for name in files:
                path = Path(dirpath, name)
                try:
                    if (name.endswith(".img") or not path.is_file()
                            or path.stat().st_size > 1 << 22):
                        continue
                    data = path.read_bytes()
                except OSError:  # another test's file, gone since the listing
                    continue
                if any(needle in data for needle in needles):
                    found.append(str(path))
    return found


@pytest.mark.all_versions
@pytest.mark.parametrize("keyformat", ["hex", "raw", "passphrase"])
def test_key_never_leaks(make_pool: PoolFactory, keyformat: str) -> None:
    secret = {"hex": os.urandom(32).hex().encode(), "raw": os.urandom(32),
              "passphrase": os.urandom(24).hex().encode()}[keyformat]
    needles = needles_for(secret, keyformat)
    scanner = ProcScanner(needles)
    log: list[str] = []
    zfs = Zfs(runner=SubprocessRunner(on_start=scanner), log=log.append)
    pool = make_pool()
    name = f"{pool}/secret"
    build = {"hex": Key.hex, "raw": Key.raw, "passphrase": Key.passphrase}[keyformat]
    props = {"pbkdf2iters": "100000"} if keyformat == "passphrase" else {}
    with build(secret) as key:
        zfs.create(name, props, key=key)
        zfs.unmount(name)
        zfs.unload_key(name)
        zfs.load_key(name, key, noop=True)
        zfs.load_key(name, key)
    with Key.passphrase("wrong passphrase") if keyformat == "passphrase" else \
            Key.hex("00" * 32) if keyformat == "hex" else Key.raw(bytes(32)) as wrong:
        zfs.unload_key(name)
        with pytest.raises(e.IncorrectKey) as caught:
            zfs.load_key(name, wrong)
    errors_text = f"{caught.value} {caught.value.stderr} {caught.value.argv}".encode()

    assert len(scanner.saw_child) == 4, "the scan must have seen each live zfs process"
    assert all(" load-key " in c or " create " in c for c in scanner.saw_child)
    assert scanner.leaks == []
    history = subprocess.run(["zpool", "history", "-il", pool], capture_output=True,
                             check=True).stdout
    assert b"load-key" in history or b"create" in history
    assert not any(needle in history for needle in needles)
    assert not any(needle in "\n".join(log).encode() for needle in needles)
    assert any(line.endswith("< <secret>") for line in log)
    assert not any(needle in errors_text for needle in needles)
    assert scan_files(needles) == []


@pytest.mark.all_versions
def test_scanner_would_see_a_key_in_argv() -> None:
    """The /proc scan is not blind: a secret placed in a child's argv is found."""
    marker = os.urandom(16).hex().encode()
    scanner = ProcScanner([marker])
    child = subprocess.Popen(["sh", "-c", "sleep 5", "sh", marker.decode()])
    try:
        scanner(Command(("zfs",), secret_stdin=True), child)
    finally:
        child.kill()
        child.wait()
    assert scanner.leaks and scanner.saw_child


@pytest.mark.parametrize(("old_format", "new_format"), [("passphrase", "hex"),
                                                        ("hex", "raw"), ("raw", "passphrase")])
def test_rotation_never_leaks_either_key(make_pool: PoolFactory, old_format: str,
                                         new_format: str) -> None:
    """change-key with properties and -l: both keys stay out of /proc, history, logs, files."""
    material = {"hex": lambda: os.urandom(32).hex().encode(), "raw": lambda: os.urandom(32),
                "passphrase": lambda: os.urandom(24).hex().encode()}
    build = {"hex": Key.hex, "raw": Key.raw, "passphrase": Key.passphrase}
    old_secret, new_secret = material[old_format](), material[new_format]()
    needles = needles_for(old_secret, old_format) + needles_for(new_secret, new_format)
    scanner = ProcScanner(needles)
    log: list[str] = []
    zfs = Zfs(runner=SubprocessRunner(on_start=scanner), log=log.append)
    pool = make_pool()
    name = f"{pool}/rotated"
    props = {"pbkdf2iters": "100000"} if old_format == "passphrase" else {}
    with build[old_format](old_secret) as old, build[new_format](new_secret) as new:
        zfs.create(name, props, key=old)
        zfs.unmount(name)
        zfs.unload_key(name)
        change = Dataset(name, zfs=zfs).change_key(new).load_key_first(old) \
            .property("oxide:epoch", "2")
        if new_format == "passphrase":
            change.pbkdf2iters(100000)
        result = change.run()
    assert result.ok and result.strategy == "journal"
    assert any(" change-key " in c for c in scanner.saw_child)
    assert any(" load-key " in c for c in scanner.saw_child)
    assert scanner.leaks == []
    history = subprocess.run(["zpool", "history", "-il", pool], capture_output=True,
                             check=True).stdout
    assert b"change-key" in history and b"channel_program" in history
    assert not any(needle in history for needle in needles)
    assert not any(needle in "\n".join(log).encode() for needle in needles)
    assert scan_files(needles) == []


@pytest.mark.all_versions
def test_encrypt_never_leaks_the_passphrase(make_pool: PoolFactory,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    """encroot encrypt with a passphrase: the key reaches each zfs receive through a pipe
    (keylocation=file:///dev/fd/N), never argv, environment, history, logs or files."""
    from encroot.convert import ConvertRequest, convert
    from encroot.names import DatasetName

    from .test_convert import build_tree

    secret = os.urandom(24).hex().encode()
    needles = needles_for(secret, "passphrase")
    scanner = ProcScanner(needles)
    log: list[str] = []
    zfs = Zfs(runner=SubprocessRunner(on_start=scanner), log=log.append)
    scene = build_tree(make_pool(), tmp_path_factory.mktemp("convert"))
    request = ConvertRequest("encrypt", DatasetName(scene.top), keyformat="passphrase",
                             keylocation="prompt", pbkdf2iters=100000)
    with Key.passphrase(secret) as key:
        convert(zfs, request, key=key)
        assert prop(scene.top, "keyformat") == "passphrase"
        unmount_tree(scene.top)
        sh(f"zfs unload-key '{scene.top}'")
        Zfs().load_key(scene.top, key)
    assert any(" receive " in c for c in scanner.saw_child), scanner.saw_child
    assert scanner.leaks == []
    history = subprocess.run(["zpool", "history", "-il", scene.pool], capture_output=True,
                             check=True).stdout
    assert b"receive" in history and not any(needle in history for needle in needles)
    assert not any(needle in "\n".join(log).encode() for needle in needles)
    assert scan_files(needles) == []

