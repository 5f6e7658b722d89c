"""``zpool`` commands: the pool part of ``Zfs`` (a mixin, so ``Zfs`` stays one door)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import InvalidProperty, PoolNotFound
from ..keys import Key
from ..names import PoolName
from .options import check_property_name, property_args
from .parse import PoolListing, parse_pool_listing
from .runner import Command, Result

if TYPE_CHECKING:
    from .commands import ZfsCommands

__all__ = ["PoolMethods"]


class PoolMethods:
    """Creating, destroying, exporting, importing and listing pools."""

    if TYPE_CHECKING:
        def zpool_command(self, *args: str, mutates: bool = False,
                          secret: bool = False) -> Command: ...

        @property
        def commands(self) -> ZfsCommands: ...

        def execute(self, command: Command, *, key: Key | None = None, check: bool = True,
                    stdin_fd: int | None = None, data: bytes | None = None,
                    timeout: float | None = None) -> Result: ...

    def create_pool(self, name: str, vdevs: Sequence[str], *,
                    pool_properties: Mapping[str, str] | None = None,
                    root_properties: Mapping[str, str] | None = None,
                    key: Key | None = None, force: bool = False,
                    no_features: bool = False) -> None:
        """``zpool create``; ``vdevs`` is the vdev spec (e.g. ``["mirror", "/a", "/b"]``).

        With ``key`` the pool's root dataset is an encryption root. With
        ``no_features`` (``-d``) every feature starts disabled.
        """
        root = dict(root_properties or {})
        if key is not None:
            root.setdefault("encryption", "on")
            root.update(keyformat=key.format, keylocation="prompt")
        args = ["create"] + (["-f"] if force else []) + (["-d"] if no_features else [])
        args += property_args("-o", pool_properties or {})
        args += property_args("-O", root)
        args += [PoolName(name), *self._check_vdevs(vdevs)]
        self.execute(self.zpool_command(*args, mutates=True, secret=key is not None), key=key)

    @staticmethod
    def _check_vdevs(vdevs: Sequence[str]) -> list[str]:
        if not vdevs:
            raise InvalidProperty("vdevs: at least one device or file is needed")
        for vdev in vdevs:
            if not isinstance(vdev, str) or vdev.startswith("-") or "\0" in vdev:
                raise InvalidProperty(f"vdev {vdev!r}: not a device path or vdev keyword")
        return list(vdevs)

    def destroy_pool(self, name: str, *, force: bool = False) -> None:
        args = ["destroy"] + (["-f"] if force else []) + [PoolName(name)]
        self.execute(self.zpool_command(*args, mutates=True))

    def export_pool(self, name: str) -> None:
        self.execute(self.commands.export_pool(name))

    def import_pool(self, name: str, *, search_dirs: Sequence[str] = (),
                    no_mount: bool = False, altroot: str | None = None) -> None:
        """``zpool import [-N] [-R ALTROOT] [-d DIR]... NAME``.

        An ``altroot`` prefixes every mount point (and sets ``cachefile=none``),
        which lets a pool be mounted beside another with the same mount points.
        """
        self.execute(self.commands.import_pool(name, search_dirs=search_dirs,
                                               no_mount=no_mount, altroot=altroot))

    def pool_device_paths(self, name: str) -> list[str]:
        """Paths of the pool's leaf devices or files (``zpool list -v -H -P``)."""
        out = self.execute(self.zpool_command("list", "-v", "-H", "-P", PoolName(name))).stdout
        paths = []
        for line in out.splitlines():
            first = line.strip().split("\t")[0]
            if first.startswith("/"):
                paths.append(first)
        return paths

    def pool_listing(self, name: str, properties: Sequence[str] = ()) -> PoolListing | None:
        """Whether the pool is imported, ``properties`` of it (features too) and its
        devices' paths, in one ``zpool list -v -H -P -o name,PROPS NAME``; None when
        there is no such pool (``parse.parse_pool_listing``)."""
        columns = ",".join(["name", *(check_property_name(p) for p in properties)])
        command = self.zpool_command("list", "-v", "-H", "-P", "-o", columns, PoolName(name))
        try:
            out = self.execute(command).stdout
        except PoolNotFound:
            return None
        return parse_pool_listing(out, properties)

    def pool_exists(self, name: str) -> bool:
        try:
            self.execute(self.zpool_command("list", "-H", "-o", "name", PoolName(name)))
        except PoolNotFound:
            return False
        return True
