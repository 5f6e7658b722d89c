"""A fake ZFS in which migrations land roughly as they would (never proof that ZFS works).

``MigratingWorld`` extends the conversion tests' ``FakeZfs`` (reads, snapshots,
``set``/``inherit``/``rename``, mounts, the claim program) with what
``encroot migrate`` runs: raw sends received whole (``-R``, ``-I``, one
dataset, ``-t`` resuming a partial receive named in ``resumes``), where every
received dataset whose encryption root is outside the stream inherits the
stream's top, which is its own root with the key unloaded; ``load-key``,
``change-key -i``, ``destroy NAME@%``, ``zpool export`` (unmounts, unloads
keys, and the pool's datasets vanish from every read until ``zpool import``
brings them back; ``exported`` holds them meanwhile), ``list -v`` and ``zfs
version`` (for a remote side).  One world holds both pools, however many
``Zfs`` (local or over ssh) talk to it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from encroot.zfs import Command

from .test_convert_run import FakeZfs

__all__ = ["VERSION", "MigratingWorld", "dataset", "snapshot"]

VERSION = "zfs-2.3.2-2~bpo12+2\nzfs-kmod-2.3.2-2~bpo12+2\n"


def dataset(**props: str) -> dict[str, str]:
    """An encrypted file system inheriting ``src``'s key, mounted (override what differs)."""
    base = {"type": "filesystem", "guid": "0", "encryption": "aes-256-gcm",
            "encryptionroot": "src", "keystatus": "available", "keyformat": "hex",
            "keylocation": "none", "origin": "-", "canmount": "on", "mountpoint": "-",
            "mounted": "yes", "createtxg": "1", "receive_resume_token": "-"}
    return {**base, **props}


def snapshot(guid: int, txg: int) -> dict[str, str]:
    return {"type": "snapshot", "guid": str(guid), "createtxg": str(txg)}


@dataclass
class MigratingWorld(FakeZfs):
    """Both pools; ``resumes`` maps a ``receive_resume_token`` to the send it finishes."""

    resumes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    guids: itertools.count = field(default_factory=lambda: itertools.count(5000))  # type: ignore[type-arg]
    # pool -> its datasets (and local properties) while it is exported
    exported: dict[str, tuple[dict[str, dict[str, str]], dict[str, set[str]]]] = field(
        default_factory=dict)

    def __call__(self, command: Command) -> tuple[int, str, str]:
        argv = command.argv[1:]
        verb = argv[0] if argv else ""
        if verb == "version":
            return 0, VERSION, ""
        if command.argv[0].endswith("zpool"):
            return self._zpool(command, argv)
        if verb == "send" and "-n" not in argv:
            self.sender = self.resumes[argv[-1]] if "-t" in argv else argv
            return 0, "", ""
        if not command.mutates:
            return super().__call__(command)
        name = argv[-1]
        if verb == "receive":
            self.changes.append(argv)
            self._land(name)
        elif verb == "snapshot":
            self.changes.append(argv)
            self._snapshot_all(name)
        elif verb == "load-key":
            self.changes.append(argv)
            for props in self._rooted_at(name):
                props["keystatus"] = "available"
        elif verb == "change-key" and "-i" in argv:
            self.changes.append(argv)
            parent = self.datasets[name.rsplit("/", 1)[0]]
            for props in self._rooted_at(name):
                props["encryptionroot"] = parent["encryptionroot"]
                props["keystatus"] = parent["keystatus"]
        elif verb == "destroy" and name.endswith("@%"):
            self.changes.append(argv)
            for found in [n for n in self.datasets if n.startswith(name[:-1])]:
                del self.datasets[found]
        else:
            return super().__call__(command)
        return 0, "", ""

    def _rooted_at(self, root: str) -> list[dict[str, str]]:
        return [props for found, props in self.datasets.items()
                if "@" not in found and props.get("encryptionroot") == root]

    def _zpool(self, command: Command, argv: tuple[str, ...]) -> tuple[int, str, str]:
        pool = argv[-1]
        if argv[0] == "list" and "-v" in argv and "-o" in argv:
            return self._list_columns(pool, argv[argv.index("-o") + 1].split(","))
        if argv[0] == "list" and "-v" in argv:
            return 0, f"{pool}\t1G\n\t/var/lib/pools/{pool}.img\t1G\n", ""
        if argv[0] == "list":
            if pool in self.datasets:
                return 0, pool + "\n", ""
            return 1, "", f"cannot open '{pool}': no such pool\n"
        if not command.mutates:
            return super().__call__(command)
        if argv[0] == "export":
            self.changes.append(argv)
            self._export(pool)
        elif argv[0] == "import":
            if pool not in self.exported:
                return 1, "", f"cannot import '{pool}': no such pool available\n"
            self.changes.append(argv)
            datasets, local = self.exported.pop(pool)
            self.datasets.update(datasets)
            self.local.update(local)
        else:
            self.changes.append(argv)
        return 0, "", ""

    def _export(self, pool: str) -> None:
        """Unmount, unload keys; the pool's datasets leave every read."""
        names = [n for n in self.datasets if n == pool or n.startswith((pool + "/", pool + "@"))]
        for found in names:
            props = self.datasets[found]
            if "@" not in found:
                props["mounted"] = "no" if props.get("type") == "filesystem" else "-"
                if props.get("encryption", "off") != "off":
                    props["keystatus"] = "unavailable"
        self.exported[pool] = ({n: self.datasets.pop(n) for n in names},
                               {n: self.local.pop(n) for n in names if n in self.local})

    def _list_columns(self, pool: str, columns: list[str]) -> tuple[int, str, str]:
        """``zpool list -v -H -P -o name,PROPS POOL``: the pool's row (features enabled),
        then its one file's row, which ignores ``-o``."""
        if pool not in self.datasets:
            return 1, "", f"cannot open '{pool}': no such pool\n"
        row = "\t".join(pool if column == "name" else "enabled" for column in columns)
        return 0, f"{row}\n\t/var/lib/pools/{pool}.img\t1G\t-\n", ""

    def _snapshot_all(self, name: str) -> None:
        """A recursive snapshot: one transaction group, a GUID per dataset."""
        top, short = name.split("@")
        txg = next(self.txg)
        for found in [n for n in self.datasets if "@" not in n and
                      (n == top or n.startswith(top + "/"))]:
            self.datasets[f"{found}@{short}"] = snapshot(next(self.guids), txg)

    def _land(self, target: str) -> None:
        """The sender's stream received at ``target``."""
        sent = self.sender
        source, short = sent[-1].split("@")
        replicate = "-R" in sent
        flag = next((f for f in ("-I", "-i") if f in sent), None)
        base = sent[sent.index(flag) + 1].split("@")[1] if flag else None
        names = sorted(n for n in self.datasets if "@" not in n and (
            n == source or (replicate and n.startswith(source + "/"))))
        for name in names:
            high = self.datasets.get(f"{name}@{short}")
            if high is None:
                continue
            low = self.datasets.get(f"{name}@{base}") if base else None
            copy = target + name[len(source):]
            if copy not in self.datasets:
                self._create(copy, self.datasets[name], source, target)
            self.datasets[copy]["receive_resume_token"] = "-"
            for snap in [n for n in self.datasets if n.startswith(name + "@")]:
                txg = int(self.datasets[snap]["createtxg"])
                wanted = (txg <= int(high["createtxg"]) if replicate or base else
                          snap == f"{name}@{short}")
                if wanted and (low is None or txg > int(low["createtxg"])):
                    self.datasets[copy + snap[len(name):]] = dict(self.datasets[snap])

    def _create(self, copy: str, original: dict[str, str], source: str, target: str) -> None:
        root = original.get("encryptionroot", "-")
        inside = root == source or root.startswith(source + "/")
        encrypted = original.get("encryption", "off") != "off"
        self.datasets[copy] = dataset(
            type=original["type"], guid=str(next(self.guids)),
            encryption=original.get("encryption", "off"),
            encryptionroot=(target + root[len(source):] if inside else target)
            if encrypted else "-",
            keystatus="unavailable" if encrypted else "-",
            keyformat=original.get("keyformat", "none"), mounted="no"
            if original["type"] == "filesystem" else "-",
            mountpoint="/" + copy if original["type"] == "filesystem" else "-",
            createtxg=str(next(self.txg)))
        self.local[copy] = set()
