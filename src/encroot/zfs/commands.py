"""Pure builders of the ``zfs`` commands that change datasets: a checked argv, as data.

Planners put these ``Command``s into their steps, so that ``-n``, ``--json``
and ``-v`` show what will run, as copy-pasteable shell lines, and an executor
runs the planned command itself instead of rebuilding it from printed text.
``Zfs``'s methods build their commands here too, so a planned command and the
one the layer would run for the same call cannot drift apart.

Building checks names and property options and starts nothing; it needs no
zfs binary (``program`` is what argv[0] will be: ``Zfs.commands`` binds the
binary the layer found, the default ``zfs`` is the one on ``$PATH``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import InvalidProperty
from ..names import (
    DatasetName,
    PoolName,
    SnapshotName,
    dataset_or_snapshot,
    validate_property_value,
)
from ..records import record, replace
from .direct import PROGRESS_FLAGS
from .holds import check_tag
from .options import check_property_name, property_args
from .runner import Command
from .send import SendSpec, send_args
from .ssh import SshTarget

__all__ = ["RECEIVE_FLAGS", "ZfsCommands", "check_receive_flags"]

RECEIVE_FLAGS = ("-F", "-u", "-v", "-n", "-s", "-e", "-d", "-h", "-M")


def check_receive_flags(options: Sequence[str]) -> None:
    """Raises InvalidProperty for a receive option encroot does not pass on."""
    for option in options:
        if option not in RECEIVE_FLAGS:
            raise InvalidProperty(f"receive option {option!r}: use one of "
                                  f"{' '.join(RECEIVE_FLAGS)}")


@record(frozen=True)
class ZfsCommands:
    """Builds state-changing ``zfs`` commands (``mutates=True``) with ``program`` first.

    Every builder raises ``InvalidName`` for a bad dataset name and
    ``InvalidProperty`` for a bad property name, value or option.
    """

    program: str = "zfs"
    remote: SshTarget | None = None  # the host the commands run on, over ssh
    zpool: str = "zpool"  # argv[0] of the pool commands (``export_pool``, ``import_pool``)

    def _command(self, *args: str, secret: bool = False) -> Command:
        return Command((self.program, *args), mutates=True, secret_stdin=secret,
                       remote=self.remote)

    def _pool_command(self, *args: str) -> Command:
        return Command((self.zpool, *args), mutates=True, remote=self.remote)

    def receive(self, target: str, *, options: Sequence[str] = (),
                properties: Mapping[str, str] | None = None,
                excluded: Sequence[str] = ()) -> Command:
        """``zfs receive [OPTIONS] [-o P=V]... [-x P]... TARGET`` (the stream is its stdin).

        ``options`` are single-letter flags (``RECEIVE_FLAGS``); ``target`` a
        file system or ``FS@SNAP`` (names the received snapshot).
        """
        check_receive_flags(options)
        args = ["receive", *options, *property_args("-o", properties or {})]
        for name in excluded:
            args += ["-x", check_property_name(name)]
        return self._command(*args, dataset_or_snapshot(target))

    def set(self, name: str, properties: Mapping[str, str]) -> Command:
        """``zfs set P=V... NAME``: several properties in one command (applied together)."""
        if not properties:
            raise InvalidProperty("zfs set: no property to set")
        pairs = [f"{check_property_name(k)}={validate_property_value(k, v)}"
                 for k, v in properties.items()]
        return self._command("set", *pairs, dataset_or_snapshot(name))

    def inherit(self, name: str, prop: str, *, recursive: bool = False) -> Command:
        args = ["inherit"] + (["-r"] if recursive else [])
        return self._command(*args, check_property_name(prop), dataset_or_snapshot(name))

    def rename(self, source: str, target: str, *, no_remount: bool = True) -> Command:
        """``zfs rename [-u]``; with ``no_remount`` mounted file systems are not remounted."""
        args = ["rename"] + (["-u"] if no_remount else [])
        return self._command(*args, DatasetName(source), DatasetName(target))

    def destroy(self, name: str, *, recursive: bool = False) -> Command:
        args = ["destroy"] + (["-r"] if recursive else [])
        return self._command(*args, dataset_or_snapshot(name))

    def destroy_all_snapshots(self, name: str) -> Command:
        """``zfs destroy NAME@%``: every snapshot of one dataset (the whole range)."""
        return self._command("destroy", f"{DatasetName(name)}@%")

    def mount(self, name: str, *, options: Sequence[str] = ()) -> Command:
        """``zfs mount [-o OPTIONS] NAME``; ``options`` are temporary mount options (``ro``)."""
        for option in options:
            if not option.isalnum():
                raise InvalidProperty(f"mount option {option!r}: one word such as ro")
        args = ["mount"] + (["-o", ",".join(options)] if options else [])
        return self._command(*args, DatasetName(name))

    def unmount(self, name: str, *, force: bool = False) -> Command:
        args = ["unmount"] + (["-f"] if force else [])
        return self._command(*args, DatasetName(name))

    def change_key(self, name: str, *, properties: Mapping[str, str] | None = None,
                   inherit: bool = False, key_on_stdin: bool = False) -> Command:
        """``zfs change-key [-i] [-o P=V]... NAME``; ``key_on_stdin`` marks the new key's
        stdin as secret (ZFS reads it there when the keylocation is ``prompt``).

        Raises:
            InvalidProperty: ``inherit`` with a key (``-i`` takes none), or a bad option.
        """
        if inherit and key_on_stdin:
            raise InvalidProperty("change-key -i takes no key", subject="-i")
        args = ["change-key"] + (["-i"] if inherit else [])
        args += property_args("-o", properties or {})
        return self._command(*args, DatasetName(name), secret=key_on_stdin)

    def load_key(self, name: str, *, noop: bool = False) -> Command:
        """``zfs load-key [-n] -L prompt NAME``, the key on stdin; ``-n`` only checks the
        key and changes nothing (a read)."""
        args = ("load-key", *(["-n"] if noop else []), "-L", "prompt", DatasetName(name))
        return Command((self.program, *args), mutates=not noop, secret_stdin=True,
                       remote=self.remote)

    def load_key_at_location(self, name: str) -> Command:
        """``zfs load-key NAME``: ZFS reads the key from the dataset's ``keylocation``."""
        return self._command("load-key", DatasetName(name))

    def export_pool(self, pool: str) -> Command:
        """``zpool export POOL``."""
        return self._pool_command("export", PoolName(pool))

    def import_pool(self, pool: str, *, search_dirs: Sequence[str] = (),
                    no_mount: bool = False, altroot: str | None = None) -> Command:
        """``zpool import [-N] [-R ALTROOT] [-d DIR]... POOL``.

        An ``altroot`` prefixes every mount point (and sets ``cachefile=none``),
        which lets a pool be mounted beside another with the same mount points.

        Raises:
            InvalidProperty: ``altroot`` is not an absolute path.
            InvalidName: ``pool`` is not a pool name.
        """
        args = ["import"] + (["-N"] if no_mount else [])
        if altroot is not None:
            if not altroot.startswith("/") or "\0" in altroot:
                raise InvalidProperty(f"altroot {altroot!r}: must be an absolute path")
            args += ["-R", altroot]
        for directory in search_dirs:
            args += ["-d", directory]
        return self._pool_command(*args, PoolName(pool))

    def channel_program(self, pool: str, *, read_only: bool = False,
                        instructions: int | None = None, memory: int | None = None) -> Command:
        """``zfs program -j [-n] [-t N] [-m BYTES] POOL -``: a channel program read from
        stdin (never a key: programs are pool history); ``-n`` makes it a read."""
        args = ["program", "-j"] + (["-n"] if read_only else [])
        if instructions is not None:
            args += ["-t", str(int(instructions))]
        if memory is not None:
            args += ["-m", str(int(memory))]
        return Command((self.program, *args, PoolName(pool), "-"), mutates=not read_only,
                       remote=self.remote)

    def snapshot(self, names: Sequence[str], *, recursive: bool = False,
                 properties: Mapping[str, str] | None = None) -> Command:
        """``zfs snapshot [-r] [-o P=V]... SNAP...``: the snapshots in one transaction group."""
        args = ["snapshot"] + (["-r"] if recursive else [])
        args += property_args("-o", properties or {})
        return self._command(*args, *(SnapshotName(name) for name in names))

    def hold(self, tag: str, snapshots: Sequence[str]) -> Command:
        """``zfs hold TAG SNAPSHOT...`` (one transaction group)."""
        return self._command("hold", check_tag(tag), *(SnapshotName(s) for s in snapshots))

    def release(self, tag: str, snapshots: Sequence[str]) -> Command:
        """``zfs release TAG SNAPSHOT...``."""
        return self._command("release", check_tag(tag), *(SnapshotName(s) for s in snapshots))

    def send(self, stream: SendSpec, *, progress: bool = False) -> Command:
        """``zfs send ...`` of ``stream``: a read (it changes nothing), the first half of
        a pipeline whose receive is built with ``receive``; ``progress`` adds ``-v -P``
        (``PROGRESS_FLAGS``), with which a pipe between hosts counts the bytes.

        Raises:
            InvalidProperty: the resume token is not a ``receive_resume_token`` value.
            InvalidName: a snapshot name is not a legal ZFS name.
        """
        args = send_args(stream)
        if progress:
            args = [args[0], *PROGRESS_FLAGS, *args[1:]]
        return replace(self._command(*args), mutates=False)
