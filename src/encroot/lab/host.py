"""What the lab needs from the host: its tools, root, and its apt mirror.

The mirror is read from the host's own apt configuration (one-line
``sources.list`` files and deb822 ``.sources`` files), so that no registry
host name is written in encroot; with none found, debootstrap uses its
built-in default.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import LabError

__all__ = ["HOST_PACKAGES", "ensure_host_tools", "find_debian_mirror", "require_root"]

# program -> Debian package that provides it
HOST_PACKAGES = {
    "qemu-system-x86_64": "qemu-system-x86",
    "debootstrap": "debootstrap",
    "mke2fs": "e2fsprogs",
}
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def which(program: str) -> str | None:
    return shutil.which(program, path=os.pathsep.join([os.environ.get("PATH", ""), SBIN_PATH]))


def require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"{action} needs root (debootstrap, chroot and mke2fs -d run as root); "
                       "run it with sudo")


def ensure_host_tools(programs: Iterable[str], say: Callable[[str], None]) -> None:
    """Install the Debian packages for any missing ``programs`` (root only).

    Raises:
        LabError: a program is missing and cannot be installed here.
    """
    missing = sorted({HOST_PACKAGES[p] for p in programs if which(p) is None})
    if not missing:
        return
    if os.geteuid() != 0 or which("apt-get") is None:
        raise LabError(f"the lab needs {', '.join(missing)}; install with: "
                       f"sudo apt-get install --no-install-recommends {' '.join(missing)}")
    say(f"installing host packages: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            raise LabError(f"{' '.join(argv)} failed: {tail}")


def _one_line_entries(text: str) -> Iterable[tuple[str, list[str], list[str]]]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        fields = line.split()
        if len(fields) < 4 or fields[0] != "deb":
            continue
        if fields[1].startswith("["):
            # options such as [arch=amd64 signed-by=...]
            while fields and not fields[0].endswith("]"):
                fields.pop(0)
            fields = ["deb", *fields[1:]]
            if len(fields) < 4:
                continue
        yield fields[1], [fields[2]], fields[3:]


def _deb822_entries(text: str) -> Iterable[tuple[str, list[str], list[str]]]:
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for raw in stanza.splitlines():
            if raw.startswith("#") or ":" not in raw:
                continue
            key, value = raw.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split(), fields.get("components", "").split()


def find_debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str | None:
    """The host's Debian archive URI (the one serving ``main`` of a release), or None.

    Security and update suites are skipped: the lab wants the main archive.
    """
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            entries = _deb822_entries(text)
        elif path.name == "sources.list" or path.suffix == ".list":
            entries = _one_line_entries(text)
        else:
            continue
        for uri, suites, components in entries:
            plain = [s for s in suites if "-" not in s and "/" not in s]
            if plain and "main" in components and "security" not in uri:
                return uri.rstrip("/")
    return None
