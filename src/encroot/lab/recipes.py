"""What goes into a lab guest for each OpenZFS version: plain data and pure functions.

Every version comes from Debian's own packages (the ``contrib`` component):

=========  ===============  =====================  ==================
version    guest suite      zfs packages from      notes
=========  ===============  =====================  ==================
2.1        bookworm         bookworm               2.1.11
2.3        bookworm         bookworm-backports     2.3.x (default)
2.4        trixie           trixie-backports       2.4.x
=========  ===============  =====================  ==================

The mirror is never named here: it is read from the host's apt sources (or
left to debootstrap's default), and the guest's sources are derived from
what debootstrap wrote.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources

from ..errors import InputError
from ..records import fields, record

__all__ = ["DEFAULT_VERSION", "RECIPES", "Recipe", "guest_sources", "recipe_for"]

DEFAULT_VERSION = "2.3"
# Bump when the build steps change in a way the recipe fields do not show.
BUILD_FORMAT = 1


@record(frozen=True)
class Recipe:
    """How to build the guest for one OpenZFS version."""

    zfs_version: str
    suite: str
    zfs_suite: str
    base_packages: tuple[str, ...] = ("linux-image-amd64", "kmod", "procps", "python3")
    # OpenSSH and iproute2 for the remote tests: sshd on the guest's loopback, and two
    # guests linked by one network device (docs/lab.md)
    guest_packages: tuple[str, ...] = ("python3-pytest", "openssh-server", "openssh-client",
                                       "iproute2")

    @property
    def backports(self) -> bool:
        return self.zfs_suite.endswith("-backports")

    def cache_key(self) -> str:
        """Directory name for the cached image: version plus a hash of everything built in."""
        recipe = {f.name: getattr(self, f.name) for f in fields(self)}
        payload = json.dumps({"recipe": recipe, "format": BUILD_FORMAT,
                              "stub": stub_init_text()}, sort_keys=True)
        digest = hashlib.sha256(payload.encode()).hexdigest()[:10]
        return f"zfs-{self.zfs_version}-{digest}"


RECIPES: dict[str, Recipe] = {
    "2.1": Recipe("2.1", suite="bookworm", zfs_suite="bookworm"),
    "2.3": Recipe("2.3", suite="bookworm", zfs_suite="bookworm-backports"),
    "2.4": Recipe("2.4", suite="trixie", zfs_suite="trixie-backports"),
}


def recipe_for(version: str | None) -> Recipe:
    """The recipe for ``version`` (``2.1``, ``2.3`` or ``2.4``; None means the default)."""
    key = DEFAULT_VERSION if version is None else version
    try:
        return RECIPES[key]
    except KeyError:
        raise InputError(f"--zfs {key!r}: the lab offers OpenZFS "
                         f"{', '.join(sorted(RECIPES))}", subject="--zfs") from None


def stub_init_text() -> str:
    """The guest's PID 1 stub baked into the image (the rest of init comes per job)."""
    return resources.files("encroot.lab").joinpath("guest", "stub-init").read_text()


def guest_sources(debootstrap_sources: str, recipe: Recipe) -> str:
    """The guest's sources.list, derived from the line debootstrap wrote.

    debootstrap writes ``deb MIRROR SUITE main``; we keep its mirror and add
    ``contrib`` (where Debian ships ZFS) and, when needed, the backports suite.
    """
    mirror = None
    for line in debootstrap_sources.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "deb" and fields[2] == recipe.suite:
            mirror = fields[1]
            break
    if mirror is None:
        raise ValueError(f"no 'deb MIRROR {recipe.suite}' line in the guest's sources.list")
    lines = [f"deb {mirror} {recipe.suite} main contrib"]
    if recipe.backports:
        lines.append(f"deb {mirror} {recipe.zfs_suite} main contrib")
    return "\n".join(lines) + "\n"
