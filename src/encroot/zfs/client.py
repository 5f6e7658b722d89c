"""``Zfs``: typed methods over the zfs and zpool commands.

Each method builds a ``Command`` (an argv list), runs it through the
``Runner`` it was given, and returns a typed result or raises the typed
error ``translate`` picks.  The layer always runs what it is asked to: a
dry run is the operations' business, which stop after planning (their
steps hold the commands they would run), so nothing here pretends that a
state-changing command succeeded.  A verbose callback sees every command as
a copy-pasteable shell line with secrets shown as ``< <secret>``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

from ..errors import (
    DatasetNotFound,
    IncorrectKey,
    InputError,
    InvalidProperty,
    ZfsError,
    ZfsUnavailable,
)
from ..keys import Key
from ..names import (
    DatasetName,
    PoolName,
    SnapshotName,
    dataset_or_snapshot,
)
from ..records import field, record
from .commands import ZfsCommands, check_receive_flags
from .concurrent import ConcurrentMethods
from .holds import HoldMethods
from .masters import SshMasters
from .messages import translate
from .options import check_property_name as _check_property_name
from .options import property_args as _property_args
from .parse import PropertyTable, ZfsVersion, parse_get_json, parse_get_table, parse_version
from .pools import PoolMethods
from .remote import RemoteMethods
from .runner import Binaries, Command, Result, Runner, SubprocessRunner, find_binaries
from .send import SendEstimate, SendSpec, parse_send_estimate, send_args
from .ssh import SshTarget, handover_argv

__all__ = ["SendSpec", "Zfs"]  # SendSpec lives in .send; kept here for importers

_KEY_PROPERTIES = ("keyformat", "keylocation")
TYPES = ("filesystem", "volume", "snapshot", "bookmark", "all")
SOURCES = ("local", "default", "inherited", "received", "temporary", "none")
# The subcommands encroot hands over whole when it adds nothing to them (``exec_replacing``).
DROP_IN_SUBCOMMANDS = ("receive", "recv", "change-key")
# On a remote host zfs and zpool are found by the remote shell (``encroot.zfs.ssh``).
REMOTE_BINARIES = Binaries(zfs="zfs", zpool="zpool")


def _write_key(fd: int, key: Key) -> None:
    """Write the key's bytes into a fresh pipe (a key fits its buffer, so this never blocks)."""
    whole = key.material()
    try:
        written = 0
        while written < len(whole):
            with whole[written:] as rest:
                written += os.write(fd, rest)
    finally:
        whole.release()


@record
class Zfs(PoolMethods, HoldMethods, RemoteMethods, ConcurrentMethods):
    """The command layer: the only code in encroot that starts zfs or zpool.

    Args:
        runner: executes commands; tests pass a fake, the default starts processes.
        binaries: paths of zfs/zpool; found on first use when None.
        log: called with each command's shell line before it runs (verbose mode).
        remote: run every command on this host over ssh (None: this host).
        masters: the ssh master connections ``remote``'s commands ride; the
            first command opens it, then checks the remote OpenZFS version.
    """

    runner: Runner = field(default_factory=SubprocessRunner)
    binaries: Binaries | None = None
    log: Callable[[str], None] | None = None
    remote: SshTarget | None = None
    masters: SshMasters | None = field(default=None, repr=False)
    # Detected features (e.g. which rotation strategies exist), kept for this Zfs's life.
    features: dict[str, object] = field(default_factory=dict, repr=False)
    _version: ZfsVersion | None = field(default=None, repr=False)
    _connected: bool = field(default=False, repr=False)

    # -- plumbing --------------------------------------------------------------

    def _paths(self) -> Binaries:
        if self.binaries is None and self.remote is not None:
            self.binaries = REMOTE_BINARIES
        if self.binaries is None:
            self.binaries = find_binaries()
        return self.binaries

    @property
    def commands(self) -> ZfsCommands:
        """The builders of state-changing commands, with the zfs binary this layer runs
        (found on first use), for plans whose steps carry the commands they run."""
        paths = self._paths()
        return ZfsCommands(paths.zfs, remote=self.remote, zpool=paths.zpool)

    def zfs_command(self, *args: str, mutates: bool = False, secret: bool = False) -> Command:
        return Command((self._paths().zfs, *args), mutates=mutates, secret_stdin=secret,
                       remote=self.remote)

    def zpool_command(self, *args: str, mutates: bool = False, secret: bool = False) -> Command:
        return Command((self._paths().zpool, *args), mutates=mutates, secret_stdin=secret,
                       remote=self.remote)

    def execute(self, command: Command, *, key: Key | None = None, check: bool = True,
                stdin_fd: int | None = None, data: bytes | None = None,
                timeout: float | None = None) -> Result:
        """Run ``command``; raise its typed error unless ``check``.

        ``key`` is written to the command's stdin from the key's own buffer;
        ``data`` (never a secret, e.g. a channel program) is written there
        instead; ``stdin_fd`` is handed to the command as its stdin instead.
        """
        if command.secret_stdin != (key is not None):
            raise InputError("a command takes a key on stdin exactly when it is marked secret")
        if self.log is not None:
            self.log(command.shell_line())
        if command.remote is not None:
            self.connect()
        stdin: memoryview | bytes | None = key.material() if key is not None else data
        try:
            if stdin_fd is not None:
                result = self.runner.run(command, stdin_fd=stdin_fd, timeout=timeout)
            else:
                result = self.runner.run(command, stdin=stdin, timeout=timeout)
        finally:
            if isinstance(stdin, memoryview):
                stdin.release()
        self._check_remote(result)
        if check and not result.ok:
            raise translate(result)
        return result

    def exec_replacing(self, subcommand: str, args: Sequence[str], *,
                       terminal: bool = False) -> NoReturn:
        """Become ``zfs SUBCOMMAND ARGS...`` (``execve``): zfs's own behaviour, whole.

        ``args`` are the user's, unchecked and unchanged: zfs parses them, reads keys,
        prints and exits as when called itself, with the caller's stdio and locale.
        On a remote host this process becomes ``ssh ... -- HOST 'PATH=... zfs
        SUBCOMMAND ARGS...'`` (``ssh.handover_argv``): its own connection, stdin
        carried to the remote zfs, the remote zfs's output and exit status (ssh's
        255 for its own failures), as ``ssh HOST zfs ...`` gives them; with
        ``terminal`` (the user is at one) ssh gets ``-t``, so that a prompt there
        is zfs's terminal prompt (``ssh.handover_argv``).

        Raises:
            InvalidProperty: ``subcommand`` is not handed over.
            ZfsUnavailable: zfs (ssh for a remote host) cannot be found or executed.
        """
        if subcommand not in DROP_IN_SUBCOMMANDS:
            raise InvalidProperty(f"zfs {subcommand}: not handed over")
        command = self.zfs_command(subcommand, *args, mutates=True)
        if command.remote is not None:
            import shutil  # here: only a remote hand-over pays for the import

            ssh = shutil.which("ssh")
            if ssh is None:
                raise ZfsUnavailable("ssh: not found in $PATH (the OpenSSH client runs "
                                     f"zfs on {command.remote.name})")
            command = Command(handover_argv(command.remote, command.argv, ssh=ssh,
                                            terminal=terminal), mutates=True)
        if self.log is not None:
            self.log(command.shell_line())
        self.runner.replace(command)

    # -- version and features --------------------------------------------------

    def version(self) -> ZfsVersion:
        """The installed OpenZFS (userland and kernel module), read once and cached."""
        if self._version is None:
            self._version = parse_version(self.execute(self.zfs_command("version")).stdout)
        return self._version

    def supports_json(self) -> bool:
        """``zfs get -j`` exists from OpenZFS 2.3 on."""
        return self.version().userland >= (2, 3)

    # -- reads ------------------------------------------------------------------

    def get(self, names: Sequence[str], properties: Sequence[str] = ("all",), *,
            recursive: bool = False, depth: int | None = None,
            types: Sequence[str] = (), sources: Sequence[str] = (),
            use_json: bool | None = None) -> PropertyTable:
        """Read properties of many datasets in one ``zfs get`` process.

        Args:
            names: datasets or snapshots to read (with ``recursive``, their trees).
            properties: property names, or ``("all",)``.
            depth: limit recursion to this many levels (implies recursion).
            types: restrict to these dataset types (filesystem, volume, snapshot...).
            sources: report only values from these sources (local, default, inherited,
                received, temporary, none).
            use_json: force ``-j`` on or off; by default on where supported.

        Raises:
            DatasetNotFound: a named dataset does not exist.
        """
        args = ["get", "-p"]
        json_mode = self.supports_json() if use_json is None else use_json
        args += ["-j"] if json_mode else ["-H", "-o", "name,property,value,source"]
        if depth is not None:
            args += ["-d", str(int(depth))]
        elif recursive:
            args.append("-r")
        if types:
            args += ["-t", ",".join(self._check_types(types))]
        if sources:
            args += ["-s", ",".join(self._check_sources(sources))]
        args.append(",".join(_check_property_name(p) for p in properties))
        args += [dataset_or_snapshot(name) for name in names]
        output = self.execute(self.zfs_command(*args)).stdout
        return parse_get_json(output) if json_mode else parse_get_table(output)

    @staticmethod
    def _check_types(types: Iterable[str]) -> list[str]:
        checked = list(types)
        for kind in checked:
            if kind not in TYPES:
                raise InvalidProperty(f"dataset type {kind!r}: use one of {', '.join(TYPES)}")
        return checked

    @staticmethod
    def _check_sources(sources: Iterable[str]) -> list[str]:
        checked = list(sources)
        for source in checked:
            if source not in SOURCES:
                raise InvalidProperty(f"property source {source!r}: use one of "
                                      f"{', '.join(SOURCES)}")
        return checked

    def list_names(self, root: str | None = None, *, recursive: bool = True,
                   types: Sequence[str] = ("filesystem", "volume")) -> list[str]:
        """Names of datasets under ``root`` (or in every pool), parents first."""
        args = ["list", "-H", "-o", "name", "-t", ",".join(self._check_types(types))]
        if recursive:
            args.append("-r")
        if root is not None:
            args.append(dataset_or_snapshot(root))
        return self.execute(self.zfs_command(*args)).stdout.splitlines()

    def exists(self, name: str) -> bool:
        """True when the dataset or snapshot exists."""
        try:
            self.execute(self.zfs_command("list", "-H", "-o", "name", "-t", "all",
                                          dataset_or_snapshot(name)))
        except DatasetNotFound:
            return False
        return True

    def pool_get(self, pool: str, properties: Sequence[str] = ("all",)) -> dict[str, str]:
        """Pool properties (``zpool get -H -p``) as ``{property: value}``."""
        props = ",".join(_check_property_name(p) for p in properties)
        out = self.execute(self.zpool_command("get", "-H", "-p", "-o", "property,value",
                                              props, PoolName(pool))).stdout
        result: dict[str, str] = {}
        for line in out.splitlines():
            prop, _, value = line.partition("\t")
            result[prop] = value
        return result

    def pools_get(self, pools: Sequence[str],
                  properties: Sequence[str]) -> dict[str, dict[str, str]]:
        """Properties of several pools in one ``zpool get``: ``{pool: {property: value}}``."""
        if not pools:
            return {}
        props = ",".join(_check_property_name(p) for p in properties)
        out = self.execute(self.zpool_command("get", "-H", "-p", "-o", "name,property,value",
                                              props, *[PoolName(p) for p in pools])).stdout
        result: dict[str, dict[str, str]] = {}
        for line in out.splitlines():
            pool, prop, value = [*line.split("\t", 2), "", ""][:3]
            result.setdefault(pool, {})[prop] = value
        return result

    def list_pools(self) -> list[str]:
        """Names of the imported pools (``zpool list -H -o name``)."""
        out = self.execute(self.zpool_command("list", "-H", "-o", "name")).stdout
        return [line for line in out.splitlines() if line]

    def pool_history(self, pool: str, *, internal: bool = True, long: bool = True) -> str:
        """``zpool history`` text; ``-i`` adds internal events, ``-l`` user and host."""
        flags = "-" + ("i" if internal else "") + ("l" if long else "")
        args = ["history"] + ([flags] if flags != "-" else []) + [PoolName(pool)]
        return self.execute(self.zpool_command(*args)).stdout

    # -- dataset changes --------------------------------------------------------

    def create(self, name: str, properties: Mapping[str, str] | None = None, *,
               key: Key | None = None, parents: bool = False,
               volume_size: str | None = None) -> None:
        """``zfs create``; with ``key`` the dataset becomes an encryption root.

        The key goes to ``zfs`` on stdin (``keylocation=prompt`` at creation);
        set another ``keylocation`` afterwards if the key should come from a
        file at boot.

        Raises:
            DatasetExists, DatasetNotFound (missing parent), FeatureDisabled, ZfsError.
        """
        props = dict(properties or {})
        if key is not None:
            for reserved in _KEY_PROPERTIES:
                if reserved in props:
                    raise InvalidProperty(f"property {reserved}: set by encroot from the key; "
                                          "do not pass it with a key", subject=reserved)
            props.setdefault("encryption", "on")
            props.update(keyformat=key.format, keylocation="prompt")
        args = ["create"] + (["-p"] if parents else [])
        if volume_size is not None:
            args += ["-V", volume_size]
        args += [*_property_args("-o", props), DatasetName(name)]
        self.execute(self.zfs_command(*args, mutates=True, secret=key is not None), key=key)

    def destroy(self, name: str, *, recursive: bool = False) -> None:
        self.execute(self.commands.destroy(name, recursive=recursive))

    def destroy_all_snapshots(self, name: str) -> None:
        """``zfs destroy NAME@%``: every snapshot of one dataset (the whole range), in one
        command; ZFS refuses when one has a clone."""
        self.execute(self.commands.destroy_all_snapshots(name))

    def snapshot(self, names: Sequence[str], *, recursive: bool = False,
                 properties: Mapping[str, str] | None = None) -> None:
        """Take the snapshots in one command (one transaction group)."""
        args = ["snapshot"] + (["-r"] if recursive else [])
        args += _property_args("-o", properties or {})
        args += [SnapshotName(name) for name in names]
        self.execute(self.zfs_command(*args, mutates=True))

    def set(self, name: str, properties: Mapping[str, str]) -> None:
        """Set several properties in one ``zfs set`` (applied together)."""
        if not properties:
            return
        self.execute(self.commands.set(name, properties))

    def inherit(self, name: str, prop: str, *, recursive: bool = False) -> None:
        self.execute(self.commands.inherit(name, prop, recursive=recursive))

    def rename(self, source: str, target: str, *, no_remount: bool = True) -> None:
        """``zfs rename [-u]``; with ``no_remount`` mounted file systems are not remounted."""
        self.execute(self.commands.rename(source, target, no_remount=no_remount))

    def receive(self, target: str, stream_fd: int, *, options: Sequence[str] = (),
                properties: Mapping[str, str] | None = None,
                excluded: Sequence[str] = (), check: bool = True) -> Result:
        """``zfs receive [OPTIONS] [-o P=V]... [-x P]... TARGET`` reading ``stream_fd``.

        ``options`` are single-letter flags such as ``-u``, ``-s``, ``-F``, ``-v``;
        ``target`` a file system or a snapshot (``FS@SNAP`` names the received one).
        With ``check`` False a failure is returned as ZFS reported it, not raised.
        """
        command = self.commands.receive(target, options=options, properties=properties,
                                        excluded=excluded)
        return self.execute(command, stdin_fd=stream_fd, check=check)

    # -- streams ----------------------------------------------------------------

    def send_size(self, stream: SendSpec) -> int:
        """The bytes ``zfs send`` estimates for ``stream`` (``zfs send -nP``; a resumed
        send's rest, see ``parse_send_estimate``)."""
        return self.send_estimate(stream).total

    def send_estimate(self, stream: SendSpec) -> SendEstimate:
        """``zfs send -nP`` of ``stream``, one process: each snapshot's bytes and the total.

        Raises:
            ZfsError: ZFS refused the send (its message), or printed no size.
        """
        args = send_args(stream)
        out = self.execute(self.zfs_command(args[0], "-n", "-P", *args[1:])).stdout
        return parse_send_estimate(out)

    def transfer(self, stream: SendSpec, target: str, *, options: Sequence[str] = ("-u", "-s"),
                 properties: Mapping[str, str] | None = None, key: Key | None = None,
                 progress: Callable[[int], None] | None = None,
                 destination: Zfs | None = None) -> Result:
        """``zfs send ... | zfs receive OPTIONS [-o P=V]... TARGET``; the receive's result.

        ``progress`` is called with byte counts as the stream passes.  With
        ``key`` the received dataset becomes an encryption root with that key:
        the receive's stdin is the stream and ZFS refuses ``keylocation=prompt``
        there, so the key goes into a pipe whose read end the receive inherits,
        named by ``-o keylocation=file:///dev/fd/N`` (never argv, environment or
        a file); set the dataset's real ``keylocation`` afterwards.

        ``destination`` is the layer of the receiving side when it is another
        host (or this host seen from a remote sender): this layer sends, that one
        receives, and the two processes are joined by a pipe (``encroot.zfs.direct``),
        the sender with ``-v -P`` for the progress.

        Raises:
            the receive's typed error, or ``ZfsError`` naming the send when
            the send failed while the receive reported nothing; ``RemoteError``
            when ssh failed on either side.
        """
        check_receive_flags(options)
        receiving = self if destination is None else destination
        direct = self.remote is not None or receiving.remote is not None
        props = dict(properties or {})
        if key is not None and ("keylocation" in props or "keyformat" in props):
            raise InvalidProperty("keylocation/keyformat: set by encroot from the key; do not "
                                  "pass them with a key", subject="keylocation")
        if key is not None and receiving.remote is not None:
            raise InvalidProperty("a key for a receive on another host goes on stdin, which "
                                  "holds the stream: receive unkeyed, then load-key",
                                  subject="key")
        sender = self.commands.send(stream, progress=direct)
        read_end = None
        if key is not None:
            read_end, write_end = os.pipe()
            try:
                _write_key(write_end, key)
            finally:
                os.close(write_end)
            props.update(keyformat=key.format, keylocation=f"file:///dev/fd/{read_end}")
        try:
            receiver = Command((receiving._paths().zfs, "receive", *options,
                                *_property_args("-o", props), DatasetName(target)),
                               mutates=True, key_fd=read_end, remote=receiving.remote)
            return self._pipe(sender, receiver, progress, receiving)
        finally:
            if read_end is not None:
                os.close(read_end)

    def run_pipeline(self, sender: Command, receiver: Command, *,
                     progress: Callable[[int], None] | None = None,
                     destination: Zfs | None = None) -> Result:
        """Run a planned ``sender | receiver`` (built with ``ZfsCommands.send`` and
        ``receive``; the receive on ``destination``'s host when given); see ``transfer``.

        Raises:
            as ``transfer``.
        """
        return self._pipe(sender, receiver, progress, self if destination is None
                          else destination)

    def _pipe(self, sender: Command, receiver: Command,
              progress: Callable[[int], None] | None, receiving: Zfs) -> Result:
        if self.log is not None:
            self.log(f"{sender.shell_line()} | {receiver.shell_line()}")
        self.connect()
        receiving.connect()
        sent, received = self.runner.pipe(sender, receiver, progress=progress)
        self._check_remote(received)
        self._check_remote(sent)
        if not received.ok:
            raise translate(Result(receiver, received.returncode, received.stdout,
                                   (received.stderr + "\n" + sent.stderr).strip()))
        if not sent.ok:
            raise ZfsError(f"zfs send failed: {' '.join(sent.stderr.split()) or 'no message'}"
                           f" (status {sent.returncode})", argv=sender.argv,
                           returncode=sent.returncode, stderr=sent.stderr)
        return received

    def mount(self, name: str, *, options: Sequence[str] = ()) -> None:
        """``zfs mount [-o OPTIONS] NAME``; ``options`` are temporary mount options (``ro``)."""
        self.execute(self.commands.mount(name, options=options))

    def unmount(self, name: str, *, force: bool = False) -> None:
        self.execute(self.commands.unmount(name, force=force))

    # -- keys -------------------------------------------------------------------

    def load_key(self, name: str, key: Key, *, noop: bool = False) -> None:
        """``zfs load-key -L prompt`` with the key on stdin.

        With ``noop`` (``-n``) ZFS only checks the key; that works whether or
        not the key is loaded, which makes it the way to test a key.

        Raises:
            IncorrectKey, KeyAlreadyLoaded, NotEncrypted, NotEncryptionRoot, DatasetNotFound.
        """
        self.execute(self.commands.load_key(name, noop=noop), key=key)

    def load_key_at_location(self, name: str) -> None:
        """``zfs load-key NAME``: ZFS reads the key from the dataset's ``file://`` keylocation."""
        self.execute(self.commands.load_key_at_location(name))

    def check_key(self, name: str, key: Key) -> bool:
        """True when ``key`` is the dataset's current key (``load-key -n``)."""
        try:
            self.load_key(name, key, noop=True)
        except IncorrectKey:
            return False
        return True

    def check_key_at(self, name: str, location: str) -> bool:
        """True when the key at ``location`` (``file://...``) opens ``name``
        (``zfs load-key -n -L LOCATION NAME``); ZFS reads the file itself.

        Any refusal (wrong key, wrong format, unreadable file) is False.
        """
        try:
            self.execute(self.zfs_command("load-key", "-n", "-L", location, DatasetName(name)))
        except ZfsError:
            return False
        return True

    def change_key(self, name: str, key: Key | None = None, *,
                   properties: Mapping[str, str] | None = None, inherit: bool = False,
                   check: bool = True) -> Result:
        """``zfs change-key [-i] [-o P=V]... NAME``; ``key`` (if any) goes on stdin.

        ZFS reads the new key from the dataset's ``keylocation`` (the one
        given in ``properties`` or the current one): pass ``key`` exactly
        when that is ``prompt``; for ``file://`` ZFS reads the file itself.
        ``properties`` may hold keyformat, keylocation, pbkdf2iters and, on
        an OpenZFS whose change-key accepts them, user properties.

        Raises:
            KeyNotLoaded, NotEncrypted, NotEncryptionRoot, DatasetNotFound, ZfsError.
        """
        command = self.commands.change_key(name, properties=properties, inherit=inherit,
                                           key_on_stdin=key is not None)
        return self.execute(command, key=key, check=check)

    def change_key_accepts_user_properties(self, name: str) -> bool:
        """Whether this ``zfs change-key`` can set user properties (upstream e635d27ebc).

        Detected, not inferred from a version: ``-o atime=on`` is refused by
        every ``zfs change-key`` before anything changes, and the refusal
        names the properties it would accept.  ``name`` must be an encrypted
        dataset that is not a clone, or the refusal comes earlier and says
        nothing about properties.
        """
        probe = self.zfs_command("change-key", "-o", "atime=on", DatasetName(name))
        result = self.execute(probe, check=False, data=b"")
        if result.ok:
            raise ZfsError(f"zfs change-key accepted atime on {name}; refusing to go on",
                           argv=probe.argv, stderr=result.stderr)
        return "and user properties may be set" in result.stderr

    def program(self, pool: str, script: str, *, read_only: bool = False,
                instructions: int | None = None, memory: int | None = None) -> Any:
        """Run a channel program (``zfs program -j``, script on stdin); return its value.

        Raises:
            PermissionDenied (channel programs need root), ZfsError (the
            program failed; ZFS's message says where).
        """
        command = self.commands.channel_program(pool, read_only=read_only,
                                                instructions=instructions, memory=memory)
        return self.run_program(command, script)

    def run_program(self, command: Command, script: str) -> Any:
        """Run a ``zfs program`` command built by ``ZfsCommands.program`` with ``script``
        on its stdin; return the program's value (see ``program``).

        Raises:
            PermissionDenied, ZfsError: as ``program``.
        """
        result = self.execute(command, data=script.encode(), check=False)
        if not result.ok:
            error = translate(result)
            if type(error) is ZfsError:  # a failed program: keep Lua's message, all lines
                error = ZfsError(" ".join(result.stderr.split()), argv=command.argv,
                                 returncode=result.returncode, stderr=result.stderr)
            raise error
        try:
            return json.loads(result.stdout).get("return")
        except (ValueError, AttributeError) as exc:
            raise ZfsError(f"zfs program printed something other than JSON: "
                           f"{result.stdout[:200]!r}", argv=result.command.argv,
                           stderr=result.stderr) from exc

    def unload_key(self, name: str, *, recursive: bool = False) -> None:
        args = ["unload-key"] + (["-r"] if recursive else []) + [DatasetName(name)]
        self.execute(self.zfs_command(*args, mutates=True))
