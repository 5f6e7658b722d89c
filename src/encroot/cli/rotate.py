"""The ``change-key``, ``recover`` and ``get`` subcommands (see ``encroot.cli``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..hosts import Location, parse_location
from ..keys import Key, KeyFormat
from ..names import DatasetName
from ..rotate import (
    STRATEGIES,
    ChangeKeyRequest,
    RotationFailed,
    plan_for,
    plan_recovery,
    read_state,
    recover,
    rotate_keys,
    user_properties,
)
from ..rotate.plan import DatasetState
from ..zfs import Zfs
from ..zfs.masters import SshMasters
from .common import Exit, emit, say_to_stderr
from .keyfiles import closing_all, read_key
from .remote import (
    LOCATION_HELP,
    add_ssh_options,
    one_host,
    refuse_local_ssh_options,
    zfs_for,
)

__all__ = ["add_rotate_commands"]

KEY_OPTIONS = ("keyformat", "keylocation", "pbkdf2iters")


def add_rotate_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add change-key, recover and get to the ``encroot`` parser."""
    change = commands.add_parser(
        "change-key", add_help=False,
        help="zfs change-key, plus user properties changed with the key as one step",
        usage="%(prog)s [-l] [-o keyformat=F] [-o keylocation=L] [-o pbkdf2iters=N] "
              "[--ssh-option ARG]... [[USER@]HOST:]DATASET\n"
              "       %(prog)s -i [-l] [--ssh-option ARG]... [[USER@]HOST:]DATASET\n"
              "       %(prog)s [-l] [-i] [-o PROP=VALUE]... [-o NS:PROP=VALUE]... "
              "[--key-file FILE... | --key-dir DIR | --key-stdin] [--current-key-file FILE]... "
              "[--strategy S] [-n] [-v] [--json] [--ssh-option ARG]... "
              "[[USER@]HOST:]DATASET...",
        description="Without a user property (-o NS:PROP=VALUE), several datasets or an "
                    "option below that zfs change-key lacks (-n, -v, --key-*, "
                    "--current-key-file, --strategy, --json, --help), encroot runs zfs "
                    "change-key itself (exec) with the arguments exactly as given: keys are "
                    "read, messages printed and exit statuses returned by zfs (a rotation "
                    "left pending by an interrupted encroot change-key is finished first). "
                    "With them, the key of each DATASET changes together with the user "
                    "properties, so that a crash never leaves properties describing the "
                    "wrong key; the strategy is chosen automatically (native: zfs change-key "
                    "sets the properties itself; journal: a crash-safe protocol that `encroot "
                    "recover` finishes) and reported. Keys come from --key-file, --key-dir or "
                    "--key-stdin, else from where zfs would read them: the keylocation file, "
                    "or for keylocation=prompt standard input when it is not a terminal and "
                    "the terminal otherwise (with -l the current key first, then the new "
                    "one). Keys reach zfs only on its stdin. "
                    "DATASET may be on another host (all of one command on the same one). "
                    "Without encroot's additions encroot checks that host's zfs and finishes "
                    "a pending rotation there, then becomes ssh HOST zfs change-key ARGS: "
                    "that zfs reads the key (from its own keylocation file, or from encroot's "
                    "stdin carried by ssh, or at a terminal through ssh -t, as a local zfs "
                    "prompts). With them, every zfs command runs there over ssh and keys "
                    "are read on this host and sent only on ssh's stdin; a keylocation file "
                    "on that host is not read from here: give the key with --key-file or "
                    "--key-stdin (the new key with -o keylocation=prompt) or "
                    "--current-key-file, or leave encroot's additions out. " + LOCATION_HELP)
    change.add_argument("--help", action="help", help="show this help and exit")
    change.add_argument("-l", dest="load", action="store_true",
                        help="load the current key first if it is not loaded")
    change.add_argument("-i", dest="inherit", action="store_true",
                        help="inherit the parent's key instead of a new one")
    change.add_argument("-o", dest="options", action="append", default=[], metavar="PROP=VALUE",
                        help="keyformat, keylocation, pbkdf2iters, or a user property ns:prop")
    keys = change.add_mutually_exclusive_group()
    keys.add_argument("--key-file", action="append", default=[], metavar="FILE",
                      help="the new key (once per DATASET, in order)")
    keys.add_argument("--key-dir", type=Path, metavar="DIR",
                      help="new keys as files DIR/<dataset name>")
    keys.add_argument("--key-stdin", action="store_true", help="read the new key from stdin")
    change.add_argument("--current-key-file", action="append", default=[], metavar="FILE",
                        help="with -l: the current key (once per DATASET); else prompted")
    change.add_argument("--strategy", choices=STRATEGIES, default="auto",
                        help="auto (default): native, then channel-program, then journal")
    change.add_argument("-n", dest="dry_run", action="store_true",
                        help="print the plan and change nothing")
    change.add_argument("-v", dest="verbose", action="store_true",
                        help="print each step and zfs command")
    change.add_argument("--json", action="store_true", help="print one JSON object")
    add_ssh_options(change)
    change.add_argument("datasets", nargs="+", metavar="[[USER@]HOST:]DATASET")
    change.set_defaults(handler=_change_key)

    rec = commands.add_parser(
        "recover", help="finish or undo an interrupted change-key",
        description="Resolve a pending key rotation on DATASET: from the rotation's new or "
                    "old key when given (zfs load-key -n), else from key-free evidence "
                    "(encryptionroot, keyformat, pbkdf2salt, pool history). The key files "
                    "are read on this host, also for a DATASET on another host. "
                    + LOCATION_HELP)
    which = rec.add_mutually_exclusive_group()
    which.add_argument("--new-key-file", metavar="FILE",
                       help="the key the interrupted rotation was installing")
    which.add_argument("--old-key-file", metavar="FILE", help="the key before that rotation")
    rec.add_argument("--force", action="store_true",
                     help="resolve even if the writing process still seems to run")
    rec.add_argument("-n", dest="dry_run", action="store_true",
                     help="say what would be done and change nothing")
    rec.add_argument("--json", action="store_true", help="print one JSON object")
    add_ssh_options(rec)
    rec.add_argument("dataset", metavar="[[USER@]HOST:]DATASET")
    rec.set_defaults(handler=_recover)

    get = commands.add_parser(
        "get", help="user properties, never stale during a rotation",
        description="Print DATASET's user properties. A pending key rotation is resolved "
                    "first, or reported as an error, rather than showing values that may "
                    "describe the wrong key. " + LOCATION_HELP)
    get.add_argument("--json", action="store_true", help="print one JSON object")
    add_ssh_options(get)
    get.add_argument("dataset", metavar="[[USER@]HOST:]DATASET")
    get.add_argument("properties", nargs="*", metavar="PROP")
    get.set_defaults(handler=_get)


def _split_options(options: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``-o`` values as (key options, user properties)."""
    key_options: dict[str, str] = {}
    user: dict[str, str] = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep:
            raise InputError(f"-o {option!r}: expected PROP=VALUE")
        target = key_options if name in KEY_OPTIONS else user
        if name in target:
            raise InputError(f"-o {name}: given twice")
        if name not in KEY_OPTIONS and ":" not in name:
            raise InputError(f"-o {name}: change-key sets only keyformat, keylocation, "
                             "pbkdf2iters and user properties (ns:prop)")
        target[name] = value
    return key_options, user


def _key_format(key_options: dict[str, str]) -> KeyFormat | None:
    value = key_options.get("keyformat")
    if value is not None and value not in ("hex", "raw", "passphrase"):
        raise InputError(f"-o keyformat={value}: use hex, raw or passphrase")
    return value  # type: ignore[return-value]


def _iterations(key_options: dict[str, str]) -> int | None:
    value = key_options.get("pbkdf2iters")
    if value is None:
        return None
    if not value.isdigit():
        raise InputError(f"-o pbkdf2iters={value}: must be a whole number")
    return int(value)


def _per_dataset(files: Sequence[str], datasets: Sequence[str], option: str) -> list[str | None]:
    if not files:
        return [None] * len(datasets)
    if len(files) != len(datasets):
        raise InputError(f"{option}: given {len(files)} time(s) for {len(datasets)} dataset(s); "
                         "give it once per dataset, in order")
    return list(files)


StateReader = Callable[[], Mapping[str, DatasetState]]


def _state_reader(zfs: Zfs, datasets: Sequence[str]) -> StateReader:
    """One ``zfs get`` of the datasets' key properties, run on first use only (bad input
    is refused before zfs runs)."""
    cache: list[Mapping[str, DatasetState]] = []

    def read() -> Mapping[str, DatasetState]:
        if not cache:
            cache.append(read_state(zfs, datasets))
        return cache[0]
    return read


def _new_keys(args: argparse.Namespace, datasets: Sequence[str], state: StateReader,
              keyformat: KeyFormat | None, location: str | None) -> list[Key | None]:
    if args.inherit:
        if args.key_file or args.key_dir or args.key_stdin:
            raise InputError("-i inherits the parent's key; give no new key")
        return [None] * len(datasets)
    if args.key_stdin:
        if len(datasets) > 1:
            raise InputError("--key-stdin: one key for one dataset; use --key-file or --key-dir")
        return [Key.from_stdin(keyformat)]
    if args.key_dir is not None:
        return [read_key(args.key_dir / name, keyformat, "key file") for name in datasets]
    files = _per_dataset(args.key_file, datasets, "--key-file")
    if args.key_file:
        return [read_key(f, keyformat, "--key-file") for f in files if f is not None]
    return [_zfs_way_new_key(name, state(), keyformat, location) for name in datasets]


def _new_key_location(name: str, props: Mapping[str, str], location: str | None) -> str:
    """Where ``zfs change-key`` reads the new key (``zfs_crypto_rewrap``): the
    keylocation given, else the dataset's own when it is an encryption root, else
    ``prompt`` (a child becoming its own root)."""
    own_root = props.get("encryptionroot") == name
    return location or (props.get("keylocation", "prompt") if own_root else "prompt")


def _zfs_way_new_key(name: str, state: Mapping[str, DatasetState], keyformat: KeyFormat | None,
                     location: str | None) -> Key | None:
    """The new key, read where ``zfs change-key`` would read it (``_new_key_location``).

    A ``file://`` location is read by zfs itself (None here).  None also where
    zfs would refuse before reading (missing dataset, no keyformat for a new
    root): the plan says why.
    """
    if name not in state:
        return None
    props = state[name].props
    own_root = props.get("encryptionroot") == name
    if _new_key_location(name, props, location).startswith("file://") \
            or (not own_root and keyformat is None):
        return None
    return _prompted(keyformat or props.get("keyformat") or "passphrase",
                     f"{name} (new)", confirm=True)


def _prompted(keyformat: str, label: str, *, confirm: bool) -> Key:
    """``keylocation=prompt`` as zfs reads it: stdin unless it is a terminal, then the terminal."""
    if not sys.stdin.isatty():
        return Key.from_stdin_line(keyformat)  # type: ignore[arg-type]
    return Key.prompt(keyformat, confirm=confirm, label=label)  # type: ignore[arg-type]


def _needs_current_key(args: argparse.Namespace, name: str, props: Mapping[str, str]) -> bool:
    """-l on an encryption root whose key is not loaded (else the plan decides)."""
    return bool(args.load) and props.get("keystatus") == "unavailable" \
        and props.get("encryptionroot") == name


def _current_keys(args: argparse.Namespace, datasets: Sequence[str],
                  state: StateReader) -> list[Key | None]:
    """With ``-l``, the current key of each root whose key is not loaded, as zfs reads it."""
    if not args.load:
        return [None] * len(datasets)
    files = _per_dataset(args.current_key_file, datasets, "--current-key-file")
    keys: list[Key | None] = []
    for name, path in zip(datasets, files, strict=True):
        props = state()[name].props if name in state() else {}
        keyformat = props.get("keyformat") or "passphrase"
        where = props.get("keylocation", "prompt")
        if not _needs_current_key(args, name, props):
            keys.append(None)
        elif path is not None:
            keys.append(read_key(path, keyformat, "--current-key-file"))  # type: ignore[arg-type]
        elif where.startswith("file://"):
            keys.append(read_key(where[len("file://"):], keyformat,  # type: ignore[arg-type]
                                  f"{name}: keylocation file"))
        else:
            keys.append(_prompted(keyformat, f"{name} (current)", confirm=False))
    return keys


def _refuse_remote_key_files(args: argparse.Namespace, host: Location,
                             datasets: Sequence[str], state: StateReader,
                             location: str | None) -> None:
    """Refuse a key that would come from a ``file://`` keylocation on a remote host.

    encroot reads keys on this host and sends them on ssh's stdin; a keylocation
    file of a remote dataset is on that host, and reading it over ssh would
    carry the key through one more channel (the rotation would also check a
    given new key against that path here).  Checked before any key is read.

    Raises:
        InputError: a new or current key would be read from such a file.
    """
    if not host.remote:
        return
    label = host.host_label
    for name in datasets:
        props = state()[name].props if name in state() else {}
        new_at = _new_key_location(name, props, location)
        if not args.inherit and new_at.startswith("file://"):
            raise InputError(
                f"{label}:{name}: the new key would be read from keylocation {new_at}, a "
                f"file on {label}; encroot reads keys on this host: give it with --key-file "
                "or --key-stdin and -o keylocation=prompt, or leave encroot's additions out "
                f"(then {label}'s zfs reads its own file)", subject=name)
        current_at = props.get("keylocation", "")
        if _needs_current_key(args, name, props) and not args.current_key_file \
                and current_at.startswith("file://"):
            raise InputError(
                f"{label}:{name}: its current key is in keylocation {current_at}, a file on "
                f"{label}; encroot reads keys on this host: give it with --current-key-file, "
                "or leave encroot's additions out", subject=name)


def _change_key(args: argparse.Namespace) -> int:
    key_options, user = _split_options(args.options)
    if args.current_key_file and not args.load:
        raise InputError("--current-key-file is used with -l only")
    host, names = one_host(args.datasets, "change keys on one host per command")
    refuse_local_ssh_options(args.ssh_options, host)
    datasets = [DatasetName(name) for name in names]
    with SshMasters(tuple(args.ssh_options)) as masters:
        zfs = zfs_for(host, masters, log=say_to_stderr if args.verbose else None)
        return _rotate(args, zfs, host, datasets, key_options, user)


def _rotate(args: argparse.Namespace, zfs: Zfs, host: Location, datasets: list[DatasetName],
            key_options: dict[str, str], user: dict[str, str]) -> int:
    keyformat = _key_format(key_options)
    location = key_options.get("keylocation")
    state = _state_reader(zfs, datasets)  # where each key comes from, as zfs would read it
    _refuse_remote_key_files(args, host, datasets, state, location)
    # zfs reads the current key (-l) first, then the new one: the same order on stdin here
    with closing_all(_current_keys(args, datasets, state)) as current, \
            closing_all(_new_keys(args, datasets, state, keyformat, location)) as new:
        requests = [ChangeKeyRequest(
            name, key, user, keyformat=keyformat,
            keylocation=location, pbkdf2iters=_iterations(key_options), inherit=args.inherit,
            load_key=old, strategy=args.strategy)
            for name, key, old in zip(datasets, new, current, strict=True)]
        where = _host_json(host)
        if args.dry_run:  # the plan is the whole of a dry run: nothing changes
            plan = plan_for(zfs, requests, recover_pending=False)
            emit(args.json, {"dry_run": True, **plan.as_json(), **where}, plan.lines())
            return Exit.OK
        try:
            results = rotate_keys(zfs, requests, say=say_to_stderr if args.verbose else None)
        except RotationFailed as failed:
            results = failed.results
    emit(args.json, {"results": [r.as_json() for r in results], **where},
         [_shown(host) + _result_line(r) for r in results])
    return Exit.OK if all(r.ok for r in results) else Exit.FAILED


def _host_json(host: Location) -> dict[str, str]:
    """``{"host": ...}`` for a remote dataset's JSON document, else nothing."""
    return {"host": host.host_label} if host.remote else {}


def _shown(host: Location) -> str:
    """What goes before a dataset name in a result line: ``HOST:`` when remote."""
    return f"{host.host_label}:" if host.remote else ""


def _result_line(result: object) -> str:
    from ..rotate import ChangeKeyResult

    assert isinstance(result, ChangeKeyResult)
    if not result.ok:
        return f"{result.dataset}: not changed: {result.error}"
    props = " ".join(f"{k}={v}" for k, v in result.properties.items())
    line = (f"{result.dataset}: key changed ({result.keyformat}, encryption root "
            f"{result.encryptionroot}; strategy {result.strategy})")
    return line + (f"; {props}" if props else "")


def _located(args: argparse.Namespace) -> tuple[Location, DatasetName]:
    """``args.dataset``'s host and its name there; ssh options only for a remote one."""
    host = parse_location(args.dataset)
    refuse_local_ssh_options(args.ssh_options, host)
    return host, DatasetName(host.dataset)


def _recover(args: argparse.Namespace) -> int:
    host, name = _located(args)
    path = args.new_key_file or args.old_key_file
    key = read_key(path, None, "key file") if path else None
    keys = {"new_key": key if args.new_key_file else None,
            "old_key": key if args.old_key_file else None, "force": args.force}
    with closing_all([key]), SshMasters(tuple(args.ssh_options)) as masters:
        zfs = zfs_for(host, masters)  # -n: the decision is the whole of a dry run
        outcome = (plan_recovery(zfs, name, **keys) if args.dry_run
                   else recover(zfs, name, **keys))
    verb = {"none": "nothing to recover", "committed": "rotation finished (committed)",
            "aborted": "rotation undone (aborted)"}[outcome.action]
    emit(args.json, {"dry_run": args.dry_run, **outcome.as_json(), **_host_json(host)},
         [f"{_shown(host)}{name}: {'(dry run) ' if args.dry_run else ''}{verb}: "
          f"{outcome.evidence}"])
    return Exit.OK


def _get(args: argparse.Namespace) -> int:
    host, name = _located(args)
    with SshMasters(tuple(args.ssh_options)) as masters:
        values = user_properties(zfs_for(host, masters), name)
    if args.properties:
        values = {p: values[p] for p in args.properties if p in values}
    emit(args.json, {"dataset": str(name), "properties": values, **_host_json(host)},
         [f"{k}\t{v}" for k, v in sorted(values.items())])
    return Exit.OK
