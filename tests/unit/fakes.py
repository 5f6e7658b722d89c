"""Fakes for unit tests of command building and decisions (never proof that ZFS works).

The runners themselves are public: ``encroot.zfs.testing``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from encroot.receive.target import derived_target
from encroot.stream import StreamInfo
from encroot.zfs import Binaries, Command, Zfs
from encroot.zfs.testing import RecordingRunner, Responder

BINARIES = Binaries(zfs="/sbin/zfs", zpool="/sbin/zpool")


def make_zfs(respond: Responder | None = None, *,
             log: Callable[[str], None] | None = None) -> tuple[Zfs, RecordingRunner]:
    runner = RecordingRunner() if respond is None else RecordingRunner(respond)
    return Zfs(runner=runner, binaries=BINARIES, log=log), runner


@dataclass
class FakeDatasets:
    """Answers the reads receive and doctor make from a dict of datasets; records writes.

    ``datasets`` maps names (snapshots too) to ``{property: value}``; a value
    set locally is listed in ``local``.  Handles ``zfs get -H -p -o
    name,property,value,source [-d N | -r] [-t ...] [-s ...] PROPS NAMES``,
    ``zpool get``, ``zfs list NAME``; every mutating command is recorded in
    ``changes`` and applied when it is a destroy, set, inherit or rename.
    """

    datasets: dict[str, dict[str, str]]
    local: dict[str, set[str]] = field(default_factory=dict)
    changes: list[tuple[str, ...]] = field(default_factory=list)

    def __call__(self, command: Command) -> tuple[int, str, str]:
        argv = command.argv
        if command.mutates:
            self.changes.append(argv[1:])
            self._apply(argv[1:])
            return 0, "", ""
        if argv[1:2] == ("get",) and argv[0].endswith("zpool"):
            return 0, "".join(f"{p}\tenabled\n" if "-o" in argv and
                              argv[argv.index("-o") + 1] == "property,value"
                              else f"{argv[-1]}\t{p}\tenabled\n"
                              for p in argv[-2].split(",")), ""
        if argv[1:2] == ("list",):
            name = argv[-1]
            if name in self.datasets:
                return 0, name + "\n", ""
            return 1, "", f"cannot open '{name}': dataset does not exist\n"
        if argv[1:2] == ("get",):
            return self._get(argv)
        return 0, "", ""

    def _apply(self, args: tuple[str, ...]) -> None:
        verb, name = args[0], args[-1]
        if verb == "destroy":
            for found in [n for n in self.datasets if self._below(n, name, None)]:
                del self.datasets[found]
        elif verb == "set":
            prop, _, value = args[1].partition("=")
            self.datasets[name][prop] = value
            self.local.setdefault(name, set()).add(prop)
        elif verb == "inherit":
            self.datasets[name].pop(args[-2], None)
            self.local.get(name, set()).discard(args[-2])
        elif verb == "rename":
            source, target = args[-2], args[-1]
            for found in [n for n in self.datasets if self._below(n, source, None)]:
                moved = target + found[len(source):]
                self.datasets[moved] = self.datasets.pop(found)
                self.local[moved] = self.local.pop(found, set())

    def _get(self, argv: tuple[str, ...]) -> tuple[int, str, str]:
        args = list(argv[2:])
        depth: int | None = 0
        if "-d" in args:
            depth = int(args[args.index("-d") + 1])
        elif "-r" in args:
            depth = None
        types = args[args.index("-t") + 1].split(",") if "-t" in args else []
        sources = args[args.index("-s") + 1].split(",") if "-s" in args else []
        positional = [a for i, a in enumerate(args) if not a.startswith("-")
                      and args[i - 1] not in ("-o", "-d", "-t", "-s")]
        props, names = positional[0].split(","), positional[1:]
        lines = []
        for name in names:
            if name not in self.datasets:
                return 1, "", f"cannot open '{name}': dataset does not exist\n"
            for found in sorted(self.datasets):
                if not self._below(found, name, depth):
                    continue
                kind = "snapshot" if "@" in found else self.datasets[found].get(
                    "type", "filesystem")
                if types and kind not in types:
                    continue
                lines += self._rows(found, props, sources)
        return 0, "".join(lines), ""

    @staticmethod
    def _below(found: str, name: str, depth: int | None) -> bool:
        if found == name:
            return True
        if not (found.startswith(name + "/") or found.startswith(name + "@")):
            return False
        levels = found[len(name):].count("/") + found[len(name):].count("@")
        return depth is None or levels <= depth

    def _rows(self, name: str, props: list[str], sources: list[str]) -> list[str]:
        values = self.datasets[name]
        wanted = list(values) if props == ["all"] else props
        rows = []
        for prop in wanted:
            if prop not in values:
                if ":" in prop and not sources:
                    rows.append(f"{name}\t{prop}\t-\t-\n")
                continue
            source = "local" if prop in self.local.get(name, set()) else (
                "received" if prop.startswith("received:") else "default")
            if sources and source not in sources:
                continue
            rows.append(f"{name}\t{prop}\t{values[prop]}\t{source}\n")
        return rows


def filesystem(**props: str) -> dict[str, str]:
    """A file system's properties as receive reads them (unencrypted, unmounted)."""
    base = {"type": "filesystem", "encryption": "off", "encryptionroot": "-",
            "keystatus": "-", "mounted": "no", "canmount": "on", "userrefs": "-",
            "clones": "-", "receive_resume_token": "-"}
    return {**base, **props}


@dataclass
class ReceivingWorld(FakeDatasets):
    """``FakeDatasets`` in which ``zfs receive`` lands ``stream`` roughly as ZFS would.

    For executor tests that follow a whole receive through the command layer:
    the received datasets and snapshots appear with the stream's GUIDs (a
    raw stream's as their own encryption roots, keys not loaded), ``-o``
    properties are set locally, an existing (partial or incremental) target
    gains the snapshots and loses its resume token. ``zfs version`` answers
    2.1 (table output); ``mount``/``unmount`` keep ``mounted`` and fail for
    names in ``busy``; ``wrong_guid`` lands every snapshot with GUID 1.
    """

    stream: StreamInfo | None = None
    busy: set[str] = field(default_factory=set)
    wrong_guid: bool = False

    def __call__(self, command: Command) -> tuple[int, str, str]:
        argv = command.argv
        if argv[1:2] == ("version",):
            return 0, "zfs-2.1.11-1\nzfs-kmod-2.1.11-1\n", ""
        if argv[1] in ("mount", "unmount"):
            if argv[1] == "unmount" and argv[-1] in self.busy:
                return 1, "", f"cannot unmount '/{argv[-1]}': pool or dataset is busy\n"
            self.changes.append(argv[1:])
            self.datasets[argv[-1]]["mounted"] = "yes" if argv[1] == "mount" else "no"
            return 0, "", ""
        if argv[1] == "receive":
            self.changes.append(argv[1:])
            self._land(argv[2:])
            return 0, "", ""
        return super().__call__(command)

    def _land(self, args: tuple[str, ...]) -> None:
        assert self.stream is not None
        stream, flags, props = self.stream, set(), {}
        for index, arg in enumerate(args[:-1]):
            if arg == "-o":
                name, _, value = args[index + 1].partition("=")
                props[name] = value
            elif arg.startswith("-") and args[index - 1] not in ("-o", "-x"):
                flags.add(arg)
        name, _, snapshot = args[-1].partition("@")
        flag = next((f for f in ("-d", "-e") if f in flags), "")
        top = str(derived_target(name, stream.toname, flag)) if flag else name
        landing = ([(d.relative_to(stream.top), d.is_encroot,
                     [(s.name, s.guid) for s in d.snapshots]) for d in stream.datasets]
                   if stream.package else
                   [("", stream.raw, [(snapshot or stream.tosnap or "", stream.toguid)])])
        root = top
        for relative, own_root, snapshots in landing:
            dataset = top if not relative else f"{top}/{relative}"
            root = dataset if own_root else root
            if dataset not in self.datasets:
                mounted = "no" if "-u" in flags or stream.raw else "yes"
                self.datasets[dataset] = filesystem(mounted=mounted) if not stream.raw else \
                    filesystem(encryption="aes-256-gcm", encryptionroot=root,
                               keystatus="unavailable")
            self.datasets[dataset]["receive_resume_token"] = "-"
            for snap, guid in snapshots:
                self.datasets[f"{dataset}@{snap}"] = {
                    "type": "snapshot", "userrefs": "0", "clones": "",
                    "guid": "1" if self.wrong_guid else str(guid)}
        for prop, value in props.items():
            self.datasets[top][prop] = value
            self.local.setdefault(top, set()).add(prop)
