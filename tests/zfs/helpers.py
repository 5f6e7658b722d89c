"""Shell helpers for real-ZFS tests: pipelines, file hashes, keys typed on stdin."""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

PASSPHRASE = "correct horse battery"


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


def sh(script: str, *, stdin: bytes | None = None, check: bool = True) -> Run:
    """Run a bash script with pipefail; return its output (raise on failure if ``check``)."""
    return _finish(["bash", "-c", "set -eo pipefail\n" + script], stdin, check,
                   ("script", script))


def run(*argv: str, stdin: bytes | None = None, check: bool = True) -> Run:
    """Run one command without a shell (a bash costs a process: tens of ms in the lab);
    return its output (raise on failure if ``check``)."""
    return _finish(list(argv), stdin, check, ("command", shlex.join(argv)))


def _finish(argv: list[str], stdin: bytes | None, check: bool, shown: tuple[str, str]) -> Run:
    """Run ``argv``; on failure with ``check``, raise naming ``shown`` (kind, text), the
    exit status and stderr."""
    done = subprocess.run(argv, input=stdin, capture_output=True, check=False)
    result = Run(done.returncode, done.stdout.decode(errors="replace"),
                 done.stderr.decode(errors="replace"))
    if check and result.returncode != 0:
        kind, text = shown
        raise AssertionError(f"{kind} failed ({result.returncode}):\n{text}\n{result.stderr}")
    return result


def prop(name: str, prop_name: str) -> str:
    return run("zfs", "get", "-H", "-p", "-o", "value", prop_name, name).stdout.strip()


def props_under(root: str, *names: str, missing_ok: bool = False) -> dict[str, dict[str, str]]:
    """Dataset -> property -> value for ``root`` and every filesystem and volume below it,
    in one ``zfs get`` (each ``prop`` call is a process: tenths of a second in the lab).
    ``missing_ok``: an empty table if ``root`` does not exist (else the check fails)."""
    done = run("zfs", "get", "-H", "-p", "-r", "-t", "filesystem,volume", "-o",
               "name,property,value", ",".join(names), root, check=not missing_ok)
    table: dict[str, dict[str, str]] = {}
    if done.returncode != 0:
        return table
    for line in done.stdout.splitlines():
        name, prop_name, value = line.split("\t")
        table.setdefault(name, {})[prop_name] = value
    return table


def exists(name: str) -> bool:
    return run("zfs", "list", "-H", "-o", "name", "-t", "all", name, check=False).returncode == 0


def names_under(root: str) -> list[str]:
    out = run("zfs", "list", "-H", "-o", "name", "-t", "all", "-r", root, check=False).stdout
    return out.split()


def snapshot_guids(root: str) -> dict[str, str]:
    """Relative snapshot name (below ``root``) -> GUID, for comparing two trees."""
    out = run("zfs", "get", "-H", "-p", "-o", "name,value", "-t", "snapshot", "-r", "guid",
              root).stdout
    result = {}
    for line in out.splitlines():
        name, guid = line.split("\t")
        result[name[len(root):]] = guid
    return result


def tree_hashes(mountpoint: str) -> dict[str, str]:
    """SHA-256 of every regular file of the file system mounted at ``mountpoint``.

    Child file systems mounted below it are not entered, so two trees compare
    one dataset at a time.
    """
    result = {}
    device = os.stat(mountpoint).st_dev
    for directory, subdirs, files in os.walk(mountpoint):
        subdirs[:] = [d for d in subdirs if os.stat(os.path.join(directory, d)).st_dev == device]
        for name in files:
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                relative = str(path.relative_to(mountpoint))
                result[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(result.items()))


def load_key(name: str, passphrase: str = PASSPHRASE) -> None:
    run("zfs", "load-key", "-L", "prompt", name, stdin=passphrase.encode())


# ZFS's minimum PBKDF2 iteration count; the default (350000) makes every passphrase
# operation take seconds under the lab's software emulation.
FAST_PBKDF2 = "100000"


def create_encrypted(name: str, passphrase: str = PASSPHRASE, *options: str) -> None:
    extra = shlex.split(" ".join(options))
    run("zfs", "create", *extra, "-o", "encryption=on", "-o", "keyformat=passphrase", "-o",
        "keylocation=prompt", "-o", f"pbkdf2iters={FAST_PBKDF2}", name,
        stdin=passphrase.encode())


def write_files(mountpoint: str, files: dict[str, bytes]) -> None:
    for relative, content in files.items():
        path = Path(mountpoint, relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    os.sync()


def encroot(args: str, *, stdin_from: str | None = None, check: bool = False) -> Run:
    """Run the encroot CLI; ``stdin_from`` is a shell command whose output it reads."""
    pipe = f"{stdin_from} | " if stdin_from else ""
    return sh(f"{pipe}encroot {args}", check=check)


def unmount_tree(top: str) -> None:
    """Unmount every mounted file system of ``top``'s tree, deepest first.

    Never ``zfs unmount -a``: other test modules' pools run beside this one."""
    sh(f"zfs list -H -o name,mounted -r -t filesystem '{top}' | tac | "
       "while IFS=$'\\t' read -r name mounted; do "
       "if [ \"$mounted\" = yes ]; then zfs unmount \"$name\" || exit 1; fi; done")


def mount_tree(top: str) -> None:
    """Mount what ``zfs mount -a`` would mount of ``top``'s tree (canmount=on), top first."""
    sh(f"zfs list -H -o name,canmount,mounted -r -t filesystem '{top}' | "
       "while IFS=$'\\t' read -r name canmount mounted; do "
       "if [ \"$canmount\" = on ] && [ \"$mounted\" = no ]; then zfs mount \"$name\" || exit 1; "
       "fi; done")


def process_files(parts: Sequence[str] = ("cmdline",)) -> Iterator[tuple[int, str, bytes]]:
    """``(pid, part, content)`` of ``/proc/PID/PART`` for every running process and each of
    ``parts`` (``cmdline``, ``environ``); a process gone since the listing is left out.

    Read with ``os.open``/``os.read``, not ``pathlib``: tests scan every 0.1 s while an
    operation runs, and in the lab a pass over 76 processes cost 50 ms of CPU through
    ``pathlib`` and 10 ms this way (the same bytes), time the operation under test and
    the other worker's tests did not get.
    """
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        for part in parts:
            content = _read_proc(f"/proc/{name}/{part}")
            if content is not None:
                yield int(name), part, content


def _read_proc(path: str) -> bytes | None:
    """The whole content of a /proc file; None if its process is gone (or not readable)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    chunks = []
    try:
        while chunk := os.read(descriptor, 1 << 16):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(descriptor)
    return b"".join(chunks)
