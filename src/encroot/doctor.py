"""``encroot doctor`` and ``encroot status``: audit encryption hierarchies, repair the safe part.

Three parts, like every operation: ``read_audit_state`` reads everything in a
constant number of processes (one recursive ``zfs get`` of the properties
that matter, one of received properties, one ``zpool get``, and one
``zpool history`` per pool only when a raw replica may have been
re-parented); ``audit`` (pure, given a way to look at key files) turns that
into findings; ``plan_fixes`` picks the findings ``--fix`` may repair and
``apply_fixes`` repairs them, each after checking its precondition again.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .errors import EncrootError, InvalidKey, ZfsError
from .keys import Key
from .migrate.model import MigrateState
from .names import DatasetName
from .owned import MIGRATE_MARKER, MIGRATE_STAGING
from .owned import RECV_OLD_SUFFIX as OLD_SUFFIX
from .owned import RECV_REPLACED as MARK_REPLACED
from .owned import RECV_SUFFIX as TEMP_SUFFIX
from .owned import RECV_VERIFIED as MARK_VERIFIED
from .owned import ROTATION_MARKER as JOURNAL_MARKER
from .zfs import Zfs

__all__ = [
    "AuditState",
    "Finding",
    "Fix",
    "apply_fixes",
    "audit",
    "plan_fixes",
    "read_audit_state",
    "status_rows",
]

Severity = Literal["info", "warning", "error"]
SEVERITY_ORDER = {"info": 0, "warning": 1, "error": 2}
DEFAULT_PBKDF2_ITERS = 350_000  # OpenZFS's default since 2.0 (DEFAULT_PBKDF2_ITERATIONS)
AUDIT_PROPERTIES = ("type", "encryption", "encryptionroot", "keyformat", "keylocation",
                    "keystatus", "pbkdf2iters", "canmount", "mountpoint", "mounted", "origin",
                    "receive_resume_token", JOURNAL_MARKER, MARK_VERIFIED, MARK_REPLACED,
                    MIGRATE_MARKER)


@dataclass(frozen=True)
class Finding:
    """One hazard: ``code`` is stable for monitoring; ``fix`` is a command, or None."""

    dataset: str
    code: str
    severity: Severity
    message: str
    fix: str | None = None

    def as_json(self) -> dict[str, object]:
        return {"dataset": self.dataset, "code": self.code, "severity": self.severity,
                "message": self.message, "fix": self.fix}


@dataclass
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

    def get(self, name: str, prop: str) -> str:
        return self.props.get(name, {}).get(prop, "")

    def is_local(self, name: str, prop: str) -> bool:
        return self.sources.get(name, {}).get(prop) == "local"

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
    findings: list[Finding] = []
    for name in state.props:
        for check in _CHECKS:
            findings.extend(check(state, name, key_file))
    findings.extend(_pool_findings(state))
    findings.extend(_leftovers(state))
    return sorted(findings, key=lambda f: (f.dataset, -SEVERITY_ORDER[f.severity], f.code))


CheckFn = Callable[[AuditState, str, Callable[[str, str], str | None]], Iterable[Finding]]


def _own_root(state: AuditState, name: str, _: object) -> Iterable[Finding]:
    parent = state.parent(name)
    if not state.is_root(name) or parent is None or not state.encrypted(parent):
        return
    if name == f"{name.split('/', 1)[0]}/{MIGRATE_STAGING}":
        yield _migrate_staging(name)
        return
    parent_root = state.get(parent, "encryptionroot")
    same_source = (state.get(name, "keyformat") == state.get(parent_root, "keyformat")
                   and state.get(name, "keylocation") in (state.get(parent_root, "keylocation"),
                                                          "prompt"))
    yield Finding(
        name, "own-root-could-inherit", "warning" if same_source else "info",
        f"{name} is its own encryption root although its parent is encrypted (root "
        f"{parent_root}); it needs its own key at every load. "
        + ("Its key format and location match the parent's, as after a raw receive without "
           "-R; it can inherit the parent's key once both keys are loaded."
           if same_source else "Its key source differs from the parent's: fine if intended."),
        f"zfs change-key -i {name}")


def _migrate_staging(name: str) -> Finding:
    """The staging of an ``encroot migrate`` between phases: an own root on purpose."""
    pool = name.split("/", 1)[0]
    return Finding(
        name, "migration-staging", "info",
        f"{name} holds a pool root that encroot migrate is copying to {pool}; its children "
        "inherit its key (the source's) until cutover re-parents it and moves them out. Do "
        "not zfs change-key -i it by hand: a raw incremental after that breaks the copy "
        "(OpenZFS issue 12614)",
        f"encroot migrate --phase cutover --key-file <SRC key> SRC {pool}")


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
                          f"zfs load-key {name} will fail (at boot too)", None)
    elif location == "prompt" and _mounts_at_boot(state, name):
        yield Finding(name, "prompt-key-at-boot", "warning",
                      f"{name} mounts at boot (canmount=on) but its key is typed at a prompt; "
                      "without an unlock step (e.g. zfs-load-key or a boot-time prompt) it "
                      "stays locked and unmounted after a reboot", None)


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
                      "loaded", f"zfs load-key {root} && zfs mount {name}")
    elif status == "available" and _mounts_at_boot(state, name) and \
            state.get(name, "mounted") == "no":
        yield Finding(name, "key-loaded-not-mounted", "info",
                      f"the key of {root} is loaded but {name} is not mounted",
                      f"zfs mount {name}")


def _plaintext(state: AuditState, name: str, _: object) -> Iterable[Finding]:
    parent = state.parent(name)
    if state.encrypted(name) or parent is None or not state.encrypted(parent):
        return
    yield Finding(name, "plaintext-under-encrypted", "warning",
                  f"{name} is not encrypted although its parent {parent} is: its data is "
                  "stored in plaintext. Encryption cannot be turned on in place; receive a "
                  "copy into an encrypted dataset (encroot receive --allow-encryption-change "
                  "replaces it safely)", None)


def _raw_replica(state: AuditState, name: str, _: object) -> Iterable[Finding]:
    if name not in state.reparented or state.is_root(name) or not state.raw_receive_signs(name):
        return
    yield Finding(name, "raw-replica-reparented", "error",
                  f"{name} was received raw and then re-parented (zfs change-key -i) to "
                  f"{state.get(name, 'encryptionroot')}; the next raw incremental received "
                  "into it would leave it unmountable once its key is unloaded (OpenZFS "
                  "12614). Do not send raw incrementals into it; send a fresh full stream "
                  "instead", None)


def _weak_iterations(state: AuditState, name: str, _: object) -> Iterable[Finding]:
    if not state.is_root(name) or state.get(name, "keyformat") != "passphrase":
        return
    iterations = state.get(name, "pbkdf2iters")
    if iterations.isdigit() and int(iterations) < DEFAULT_PBKDF2_ITERS:
        yield Finding(name, "weak-pbkdf2iters", "warning",
                      f"pbkdf2iters is {iterations}, below ZFS's default of "
                      f"{DEFAULT_PBKDF2_ITERS}: the passphrase is cheaper to guess",
                      f"zfs change-key -o pbkdf2iters={DEFAULT_PBKDF2_ITERS} {name}")


def _pending(state: AuditState, name: str, _: object) -> Iterable[Finding]:
    if state.is_local(name, JOURNAL_MARKER):
        yield Finding(name, "pending-rotation", "error",
                      f"an encroot change-key on {name} was interrupted; until it is resolved "
                      "its user properties may describe the wrong key",
                      f"encroot recover {name}")


_CHECKS: tuple[CheckFn, ...] = (_own_root, _keylocation, _key_status, _plaintext, _raw_replica,
                                _weak_iterations, _pending)


def _pool_findings(state: AuditState) -> Iterable[Finding]:
    for pool, value in sorted(state.encryption_feature.items()):
        if value != "disabled":
            continue
        managed = any(DatasetName(n).pool == pool and any(
            state.is_local(n, m) for m in (JOURNAL_MARKER, MARK_VERIFIED, MARK_REPLACED))
            for n in state.props)
        yield Finding(pool, "encryption-feature-disabled", "warning" if managed else "info",
                      f"pool {pool} has feature@encryption disabled: it cannot receive or "
                      "create encrypted datasets" + (" although encroot manages datasets "
                                                      "in it" if managed else ""),
                      f"zpool set feature@encryption=enabled {pool}")


def leftover_target(state: AuditState, name: str) -> str | None:
    """The target an interrupted ``encroot receive`` left ``name`` behind for, if any."""
    for suffix in (TEMP_SUFFIX, OLD_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    if state.is_local(name, MARK_REPLACED):
        return state.get(name, MARK_REPLACED)
    if state.is_local(name, MARK_VERIFIED):
        return name
    return None


def _leftovers(state: AuditState) -> Iterable[Finding]:
    seen: set[str] = set()
    for name in state.props:
        target = leftover_target(state, name)
        parent = state.parent(name)
        if target is None or target in seen or (
                parent is not None and leftover_target(state, parent) == target):
            continue
        seen.add(target)
        yield Finding(name, "leftover-temporary", "warning",
                      f"{name} is left from an interrupted encroot receive into {target}",
                      f"encroot receive --recover {target}")
    yield from _migrate_leftovers(state)


def _migrate_leftovers(state: AuditState) -> Iterable[Finding]:
    """A cutover that stopped while re-parenting; finishing it needs SRC's key (no --fix)."""
    for name in state.props:
        if not state.is_local(name, MIGRATE_MARKER):
            continue
        marker, _phase = MigrateState.markers(state.get(name, MIGRATE_MARKER))
        source = marker.source if marker is not None else "SRC"
        yield Finding(name, "leftover-temporary", "warning",
                      f"{name} is in the middle of an encroot migrate cutover from {source} "
                      "(re-parenting began; no raw incremental may follow)",
                      f"encroot migrate --phase cutover --key-file <{source} key> {source} "
                      f"{name}")


# -- fixes ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Fix:
    """One repair ``--fix`` applies; ``command`` is what it runs, for ``-n``."""

    finding: Finding
    command: str


def plan_fixes(findings: Sequence[Finding], state: AuditState) -> list[Fix]:
    """The findings whose repair cannot lose data or access, with preconditions met."""
    fixes = []
    for finding in findings:
        if finding.code == "own-root-could-inherit" and _can_reparent(state, finding.dataset):
            fixes.append(Fix(finding, f"zfs change-key -i {finding.dataset}"))
        elif finding.code == "pending-rotation":
            fixes.append(Fix(finding, f"encroot recover {finding.dataset}"))
        elif finding.code == "leftover-temporary" and finding.fix is not None and \
                finding.fix.startswith("encroot receive"):
            fixes.append(Fix(finding, finding.fix))
    return fixes


def _can_reparent(state: AuditState, name: str) -> bool:
    """Both keys loaded, the key source matches the parent's, and no raw-receive history."""
    parent = state.parent(name)
    if parent is None:
        return False
    return (state.get(name, "keystatus") == "available"
            and state.get(parent, "keystatus") == "available"
            and not state.raw_receive_signs(name)
            and _own_root_severity(state, name) == "warning")


def _own_root_severity(state: AuditState, name: str) -> str:
    return next((f.severity for f in _own_root(state, name, None)), "")


@dataclass(frozen=True)
class FixOutcome:
    fix: Fix
    done: bool
    detail: str


def apply_fixes(zfs: Zfs, fixes: Sequence[Fix]) -> list[FixOutcome]:
    """Apply each fix; a failing one is reported and the others go on."""
    from .receive import recover as recover_receive
    from .rotate import recover as recover_rotation

    outcomes = []
    for fix in fixes:
        name = fix.finding.dataset
        try:
            if fix.finding.code == "own-root-could-inherit":
                zfs.change_key(name, inherit=True)
                detail = f"{name} now inherits its key"
            elif fix.finding.code == "pending-rotation":
                result = recover_rotation(zfs, name)
                detail = f"rotation {result.action}: {result.evidence}"
            else:
                target = (fix.finding.fix or "").rsplit(" ", 1)[-1]
                report = recover_receive(zfs, DatasetName(target))
                detail = "; ".join(report.actions) or "nothing left to do"
            outcomes.append(FixOutcome(fix, True, detail))
        except (EncrootError, ZfsError) as exc:
            outcomes.append(FixOutcome(fix, False, str(exc)))
    return outcomes


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

