"""The audit: read everything in a few processes, then findings from pure checks.

``read_audit_state`` reads everything in a constant number of processes (one
recursive ``zfs get`` of the properties that matter, one of received
properties, one ``zpool get``, one ``zpool history`` per pool only when a
raw replica may have been re-parented, and one ``zfs list`` of snapshots per
dataset named like a migration staging); ``audit`` (pure, given a way to look
at key files) turns that into findings.  encroot's own state is recognised
only through ``encroot.owned`` (``doctor.owned``).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from ..errors import InvalidKey
from ..keys import Key
from ..names import DatasetName
from ..owned import MARKER_PROPERTIES, Marker, NotOurs, lookalike_target, parse_marker
from ..records import field, record
from ..zfs import Command, Zfs

__all__ = [
    "SEVERITY_ORDER",
    "STATUS_COLUMNS",
    "AuditState",
    "Finding",
    "encroot_command",
    "history_facts",
    "key_file_problem",
    "read_audit_state",
    "status_rows",
    "zfs_command",
]

Severity = Literal["info", "warning", "error"]
SEVERITY_ORDER = {"info": 0, "warning": 1, "error": 2}
DEFAULT_PBKDF2_ITERS = 350_000  # OpenZFS's default since 2.0 (DEFAULT_PBKDF2_ITERATIONS)
AUDIT_PROPERTIES = ("type", "encryption", "encryptionroot", "keyformat", "keylocation",
                    "keystatus", "pbkdf2iters", "canmount", "mountpoint", "mounted", "origin",
                    "receive_resume_token", *MARKER_PROPERTIES)


def zfs_command(*args: str, program: str = "zfs") -> Command:
    """A ``zfs``/``zpool`` command as printed in a finding (the program found on PATH)."""
    return Command((program, *args), mutates=True)


def encroot_command(*args: str) -> Command:
    """An ``encroot`` command as printed in a finding."""
    return Command(("encroot", *args), mutates=True)


@record(frozen=True)
class Finding:
    """One hazard: ``code`` is stable for monitoring; ``fix`` holds the commands that fix
    it (run one after the other), or nothing."""

    dataset: str
    code: str
    severity: Severity
    message: str
    fix: tuple[Command, ...] = ()
    holder: str | None = None  # operation-in-progress: the live process that holds it

    @property
    def fix_line(self) -> str | None:
        """The fix as one copy-pasteable shell line (``&&`` between commands), or None."""
        return " && ".join(c.shell_line() for c in self.fix) or None

    def as_json(self) -> dict[str, object]:
        return {"dataset": self.dataset, "code": self.code, "severity": self.severity,
                "message": self.message, "fix": self.fix_line,
                "fix_argv": [list(c.argv) for c in self.fix] or None}


@record
class AuditState:
    """What ZFS reported: properties (and their sources) by dataset, pools, history."""

    props: dict[str, dict[str, str]]
    sources: dict[str, dict[str, str]]
    received: set[str]
    encryption_feature: dict[str, str]
    # From pool history, read only where needed: datasets re-parented with
    # `zfs change-key -i`, and datasets that `zfs receive` created or updated.
    reparented: set[str] = field(default_factory=set)
    received_in_history: set[str] = field(default_factory=set)
    # Snapshot names (after '@') of datasets named like a migration staging.
    snapshots: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str, prop: str) -> str:
        return self.props.get(name, {}).get(prop, "")

    def is_local(self, name: str, prop: str) -> bool:
        return self.sources.get(name, {}).get(prop) == "local"

    def marker(self, name: str, prop: str) -> Marker | NotOurs | None:
        """encroot's marker ``prop`` set on ``name`` itself, parsed; None when not set there."""
        if not self.is_local(name, prop):
            return None
        return parse_marker(prop, self.get(name, prop))

    def parent(self, name: str) -> str | None:
        parent = DatasetName(name).parent
        return None if parent is None else str(parent)

    def encrypted(self, name: str) -> bool:
        return self.get(name, "encryption") not in ("", "off")

    def is_root(self, name: str) -> bool:
        return self.encrypted(name) and self.get(name, "encryptionroot") == name

    def raw_receive_signs(self, name: str) -> bool:
        """Received properties, a resume token, or a receive in pool history."""
        return (name in self.received or name in self.received_in_history
                or self.get(name, "receive_resume_token") not in ("", "-"))


# -- reading ------------------------------------------------------------------------

def read_audit_state(zfs: Zfs, targets: Sequence[str] = ()) -> AuditState:
    """Read all the audit needs in a constant number of processes.

    ``targets``: pools or datasets (each with everything below it); none
    means every imported pool.
    """
    names = [str(DatasetName(t)) for t in targets] or zfs.list_pools()
    if not names:
        return AuditState({}, {}, set(), {})
    table = zfs.get(names, AUDIT_PROPERTIES, recursive=True, types=("filesystem", "volume"),
                    use_json=False)
    props = {n: {p: v.value for p, v in table[n].items()} for n in table}
    sources = {n: {p: v.source for p, v in table[n].items()} for n in table}
    received_table = zfs.get(names, ("all",), recursive=True, types=("filesystem", "volume"),
                             sources=("received",), use_json=False)
    pools = sorted({DatasetName(n).pool for n in props})
    feature = {pool: values.get("feature@encryption", "")
               for pool, values in zfs.pools_get(pools, ("feature@encryption",)).items()}
    state = AuditState(props, sources, set(received_table), feature)
    for name in props:
        shape = lookalike_target(name)
        if shape is not None and shape[0] == "migration staging":
            listed = zfs.list_names(name, recursive=False, types=("snapshot",))
            state.snapshots[name] = [s.split("@", 1)[1] for s in listed if "@" in s]
    for pool in sorted({DatasetName(n).pool for n in _history_suspects(state)}):
        reparented, received = history_facts(zfs.pool_history(pool, internal=False,
                                                              long=False))
        state.reparented |= reparented
        state.received_in_history |= received
    return state


def _history_suspects(state: AuditState) -> list[str]:
    """Datasets whose story only pool history tells: inheriting a key (re-parented?) or
    their own root below an encrypted parent (received raw?)."""
    suspects = []
    for name in state.props:
        parent = state.parent(name)
        if not state.encrypted(name) or parent is None or not state.encrypted(parent):
            continue
        suspects.append(name)
    return suspects


_CHANGE_KEY_INHERIT = re.compile(r"^\S+ zfs change-key(?: \S+)* -i(?: \S+)* (\S+)$")
_RECEIVE = re.compile(r"^\S+ zfs (?:receive|recv)(?: \S+)* (\S+)$")


def history_facts(history: str) -> tuple[set[str], set[str]]:
    """From ``zpool history``: (datasets re-parented by ``zfs change-key -i``, datasets
    ``zfs receive`` wrote)."""
    reparented, received = set(), set()
    for line in history.splitlines():
        line = line.strip()
        if match := _CHANGE_KEY_INHERIT.match(line):
            reparented.add(match.group(1))
        elif match := _RECEIVE.match(line):
            received.add(match.group(1))
    return reparented, received


# -- key files ----------------------------------------------------------------------

def key_file_problem(path: str, keyformat: str) -> str | None:
    """Why the file at a ``file://`` keylocation cannot deliver a ``keyformat`` key, or None."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return f"the key file {path} does not exist"
    except OSError as exc:
        return f"the key file {path} cannot be read ({exc.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return f"the key file {path} is not a regular file"
    if keyformat not in ("hex", "raw", "passphrase"):
        return None
    try:  # read it as ZFS would: encroot's Key applies ZFS's rules for each format
        with Key.from_file(path, keyformat):  # type: ignore[arg-type]
            return None
    except InvalidKey as exc:
        return str(exc)


# -- the audit (pure) ---------------------------------------------------------------

def audit(state: AuditState, *,
          key_file: Callable[[str, str], str | None] = key_file_problem) -> list[Finding]:
    """Every finding, ordered by dataset then severity (errors first)."""
    from .owned import owned_findings

    findings: list[Finding] = []
    for name in state.props:
        for check in _CHECKS:
            findings.extend(check(state, name, key_file))
    findings.extend(_pool_findings(state))
    findings.extend(owned_findings(state))
    return sorted(findings, key=lambda f: (f.dataset, -SEVERITY_ORDER[f.severity], f.code))


CheckFn = Callable[[AuditState, str, Callable[[str, str], str | None]], Iterable[Finding]]


def is_staging(state: AuditState, name: str) -> bool:
    """``POOL/encroot-migrate`` that encroot's marker on POOL or its snapshots name as a
    migration's staging (``encroot.owned``)."""
    from ..owned import MIGRATE_MARKER, MIGRATE_SNAPSHOT_PREFIX, MigrateCutover, MigratePhase

    shape = lookalike_target(name)
    if shape is None or shape[0] != "migration staging":
        return False
    marker = state.marker(shape[1], MIGRATE_MARKER)
    return isinstance(marker, MigrateCutover | MigratePhase) or any(
        snap.startswith(MIGRATE_SNAPSHOT_PREFIX) for snap in state.snapshots.get(name, []))


def same_key_source(state: AuditState, name: str) -> bool:
    """Its key format matches its parent's root's and its location is that root's or prompt
    (as after a raw receive without -R): the ``own-root-could-inherit`` warning level."""
    parent = state.parent(name)
    if parent is None:
        return False
    parent_root = state.get(parent, "encryptionroot")
    return (state.get(name, "keyformat") == state.get(parent_root, "keyformat")
            and state.get(name, "keylocation") in (state.get(parent_root, "keylocation"),
                                                   "prompt"))


def _own_root(state: AuditState, name: str, _: object) -> Iterable[Finding]:
    parent = state.parent(name)
    if not state.is_root(name) or parent is None or not state.encrypted(parent):
        return
    shape = lookalike_target(name)
    if shape is not None and shape[0] == "migration staging":
        if is_staging(state, name):
            yield _migrate_staging(name)
        return  # a lookalike: doctor.owned reports it, nothing else touches it
    if shape is not None and shape[0] == "conversion temporary":
        return  # its own root on purpose until cutover (doctor.owned reports it)
    parent_root = state.get(parent, "encryptionroot")
    same_source = same_key_source(state, name)
    yield Finding(
        name, "own-root-could-inherit", "warning" if same_source else "info",
        f"{name} is its own encryption root although its parent is encrypted (root "
        f"{parent_root}); it needs its own key at every load. "
        + ("Its key format and location match the parent's, as after a raw receive without "
           "-R; it can inherit the parent's key once both keys are loaded."
           if same_source else "Its key source differs from the parent's: fine if intended."),
        (zfs_command("change-key", "-i", name),))


def _migrate_staging(name: str) -> Finding:
    """The staging of an ``encroot migrate`` between phases: an own root on purpose."""
    pool = name.split("/", 1)[0]
    return Finding(
        name, "migration-staging", "info",
        f"{name} holds a pool root that encroot migrate is copying to {pool}; its children "
        "inherit its key (the source's) until cutover re-parents it and moves them out. Do "
        "not zfs change-key -i it by hand: a raw incremental after that breaks the copy "
        "(OpenZFS issue 12614)",
        (encroot_command("migrate", "--phase", "cutover", "--key-file", "<SRC key>", "SRC",
                         pool),))


def _keylocation(state: AuditState, name: str,
                 key_file: Callable[[str, str], str | None]) -> Iterable[Finding]:
    if not state.is_root(name):
        return
    location = state.get(name, "keylocation")
    if location.startswith("file://"):
        problem = key_file(location[len("file://"):], state.get(name, "keyformat"))
        if problem is not None:
            yield Finding(name, "keylocation-unusable", "error",
                          f"keylocation {location} cannot deliver the key: {problem}; "
                          f"zfs load-key {name} will fail (at boot too)")
    elif location == "prompt" and _mounts_at_boot(state, name):
        yield Finding(name, "prompt-key-at-boot", "warning",
                      f"{name} mounts at boot (canmount=on) but its key is typed at a prompt; "
                      "without an unlock step (e.g. zfs-load-key or a boot-time prompt) it "
                      "stays locked and unmounted after a reboot")


def _mounts_at_boot(state: AuditState, name: str) -> bool:
    return (state.get(name, "type") == "filesystem" and state.get(name, "canmount") == "on"
            and state.get(name, "mountpoint") not in ("none", "legacy", "-", ""))


def _key_status(state: AuditState, name: str, _: object) -> Iterable[Finding]:
    if not state.encrypted(name):
        return
    status = state.get(name, "keystatus")
    root = state.get(name, "encryptionroot")
    if status == "unavailable" and _mounts_at_boot(state, name):
        yield Finding(name, "key-unavailable", "warning",
                      f"{name} should be mounted (canmount=on) but the key of {root} is not "
                      "loaded", (zfs_command("load-key", root), zfs_command("mount", name)))
    elif status == "available" and _mounts_at_boot(state, name) and \
            state.get(name, "mounted") == "no":
        yield Finding(name, "key-loaded-not-mounted", "info",
                      f"the key of {root} is loaded but {name} is not mounted",
                      (zfs_command("mount", name),))


def _plaintext(state: AuditState, name: str, _: object) -> Iterable[Finding]:
    parent = state.parent(name)
    if state.encrypted(name) or parent is None or not state.encrypted(parent):
        return
    yield Finding(name, "plaintext-under-encrypted", "warning",
                  f"{name} is not encrypted although its parent {parent} is: its data is "
                  "stored in plaintext. Encryption cannot be turned on in place; receive a "
                  "copy into an encrypted dataset (encroot receive --allow-encryption-change "
                  "replaces it safely)")


def _raw_replica(state: AuditState, name: str, _: object) -> Iterable[Finding]:
    if name not in state.reparented or state.is_root(name) or not state.raw_receive_signs(name):
        return
    yield Finding(name, "raw-replica-reparented", "error",
                  f"{name} was received raw and then re-parented (zfs change-key -i) to "
                  f"{state.get(name, 'encryptionroot')}; the next raw incremental received "
                  "into it would leave it unmountable once its key is unloaded (OpenZFS "
                  "12614). Do not send raw incrementals into it; send a fresh full stream "
                  "instead")


def _weak_iterations(state: AuditState, name: str, _: object) -> Iterable[Finding]:
    if not state.is_root(name) or state.get(name, "keyformat") != "passphrase":
        return
    iterations = state.get(name, "pbkdf2iters")
    if iterations.isdigit() and int(iterations) < DEFAULT_PBKDF2_ITERS:
        yield Finding(name, "weak-pbkdf2iters", "warning",
                      f"pbkdf2iters is {iterations}, below ZFS's default of "
                      f"{DEFAULT_PBKDF2_ITERS}: the passphrase is cheaper to guess",
                      (zfs_command("change-key", "-o",
                                   f"pbkdf2iters={DEFAULT_PBKDF2_ITERS}", name),))


_CHECKS: tuple[CheckFn, ...] = (_own_root, _keylocation, _key_status, _plaintext, _raw_replica,
                                _weak_iterations)


def _pool_findings(state: AuditState) -> Iterable[Finding]:
    for pool, value in sorted(state.encryption_feature.items()):
        if value != "disabled":
            continue
        managed = any(DatasetName(n).pool == pool and any(
            state.marker(n, m) is not None and not isinstance(state.marker(n, m), NotOurs)
            for m in MARKER_PROPERTIES) for n in state.props)
        yield Finding(pool, "encryption-feature-disabled", "warning" if managed else "info",
                      f"pool {pool} has feature@encryption disabled: it cannot receive or "
                      "create encrypted datasets" + (" although encroot manages datasets "
                                                      "in it" if managed else ""),
                      (zfs_command("set", "feature@encryption=enabled", pool,
                                   program="zpool"),))

# -- status ---------------------------------------------------------------------------

STATUS_COLUMNS = ("dataset", "encryption", "encryptionroot", "keyformat", "keylocation",
                  "keystatus", "root")


def status_rows(state: AuditState) -> list[dict[str, str]]:
    """One row per dataset: encryption, its root, key format/location/status, own or inherited."""
    rows = []
    for name in state.props:
        encrypted = state.encrypted(name)
        root = state.get(name, "encryptionroot") if encrypted else "-"
        rows.append({
            "dataset": name, "encryption": state.get(name, "encryption"),
            "encryptionroot": root,
            "keyformat": state.get(root, "keyformat") if encrypted else "-",
            "keylocation": state.get(root, "keylocation") if encrypted else "-",
            "keystatus": state.get(name, "keystatus") if encrypted else "-",
            "root": "-" if not encrypted else ("own" if root == name else "inherited"),
        })
    return rows

