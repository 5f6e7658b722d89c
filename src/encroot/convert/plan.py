"""Planning a conversion phase (pure): checks, refusals, notes and the per-dataset transfers.

OpenZFS 2.1 to 2.4 refuse a non-raw send of an encrypted dataset with
properties (``-p``, ``-R``, ``-b``): ``send_iterate_fs()`` in
``lib/libzfs/libzfs_sendrecv.c`` prints "encrypted dataset %s may not be
sent with properties without the raw flag".  So every dataset travels as
its own pipeline, parents and origins first, and what ``-R`` would have
carried is reproduced from the bulk read: local and received properties as
``zfs receive -o`` (all but the ones below), snapshots (``-I``: every
snapshot in one stream; without ``-p`` or ``-R`` libzfs gathers no
properties, so ``-I`` of an encrypted dataset is allowed), clones (``zfs send
-i ORIGIN CLONE@first`` received with ``-o origin=``, one substream: a ``-I``
stream is a package, whose receive ignores ``-o origin=`` and looks the origin
up by GUID), holds (placed again at cutover).  The same path serves
``encrypt`` too, so one path is tested on every version.

Withheld until cutover: ``mountpoint``, ``canmount``, ``sharenfs`` and
``sharesmb`` (the new tree would collide with the old one's mount points;
until then every new filesystem inherits its mount point below
``X.encroot-convert`` and is received unmounted, ``-u``).  Never copied: the encryption
properties (the request decides them), the create-time ones the stream
carries (``volsize``, ``volblocksize``, ``casesensitivity``, ``normalization``,
``utf8only``) and encroot's own markers.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ..owned import (
    CONVERT_MARKER,
    MARKER_PROPERTIES,
    ConvertPhase,
    ConvertVerified,
    NotOurs,
    Owner,
    dumps,
)
from ..progress import human_bytes
from ..records import field, record, replace
from ..zfs import Command, SendSpec, ZfsCommands
from .model import ConvertRequest, ConvertState, Node, Tree
from .steps import DEFERRED_PROPERTIES, Step, phase_steps

__all__ = [
    "DEFERRED_PROPERTIES",
    "PhasePlan",
    "Step",
    "Transfer",
    "human_bytes",
    "plan_phase",
    "receive_properties",
    "send_order",
]

NOT_COPIED = ("encryption", "keyformat", "keylocation", "pbkdf2iters", "pbkdf2salt",
              "encryptionroot", "volsize", "volblocksize", "casesensitivity", "normalization",
              "utf8only", "origin", *MARKER_PROPERTIES)


@record(frozen=True)
class Transfer:
    """One ``zfs send | zfs receive -s -u`` pipeline into the new tree.

    ``kind``: ``full`` (the dataset's oldest snapshot), ``clone`` (``-i ORIGIN``,
    received with ``-o origin=``), ``incremental`` (``-I`` from the newest common
    snapshot) or ``resume`` (``zfs send -t`` of a partial receive).  ``with_key``:
    the receive creates the new encryption root with the key (through a pipe).
    ``marker``: the phase marker the first receive of the new top sets (``-o``),
    so that the new tree names its owner from its creation.  ``commands``: the
    send and the receive as ``Zfs.transfer`` runs them (the planner fills them
    in), but for the key: with ``with_key`` the run adds ``-o keyformat=F -o
    keylocation=file:///dev/fd/N`` naming the pipe the key travels in.
    """

    source: str
    target: str
    kind: str
    spec: SendSpec
    properties: Mapping[str, str] = field(default_factory=dict)
    with_key: bool = False
    force: bool = False
    estimate: int | None = None
    marker: str | None = None
    commands: tuple[Command, ...] = ()

    @property
    def options(self) -> tuple[str, ...]:
        return ("-s", "-u", "-F") if self.force else ("-s", "-u")

    @property
    def receive_properties(self) -> dict[str, str]:
        """The receive's ``-o`` properties: the copied ones, then the marker."""
        marker = {} if self.marker is None else {CONVERT_MARKER: self.marker}
        return {**self.properties, **marker}

    def pipeline(self, commands: ZfsCommands) -> tuple[Command, Command]:
        """The send and the receive (without the key's options)."""
        return (commands.send(self.spec),
                commands.receive(self.target, options=self.options,
                                 properties=self.receive_properties))

    def command(self) -> str:
        """The pipeline as a shell line (the key shown as the pipe it travels in)."""
        send, receive = self.commands or self.pipeline(ZfsCommands())
        if self.with_key:
            receive = Command((*receive.argv[:-1], "-o", "keyformat=<format>", "-o",
                               "keylocation=file:///dev/fd/N", receive.argv[-1]))
        return f"{send.shell_line()} | {receive.shell_line()}" + (
            " N< <secret>" if self.with_key else "")

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "kind": self.kind,
                "command": self.command(), "estimate": self.estimate,
                "argv": [list(c.argv) for c in self.commands],
                "properties": dict(self.properties), "with_key": self.with_key}


@record(frozen=True)
class PhasePlan:
    """Everything one phase will do, and why; ``refusals`` non-empty means it will not run."""

    operation: str
    dataset: str
    phase: str
    goal: str
    checks: tuple[str, ...]
    notes: tuple[str, ...]
    refusals: tuple[str, ...]
    datasets: tuple[dict[str, Any], ...]
    transfers: tuple[Transfer, ...]
    steps: tuple[Step, ...]
    available: int
    drops: tuple[str, ...] = ()

    @property
    def estimated_bytes(self) -> int:
        return sum(t.estimate or 0 for t in self.transfers)

    def to_json(self) -> dict[str, Any]:
        return {"operation": self.operation, "dataset": self.dataset, "phase": self.phase,
                "snapshot": self.goal, "checks": list(self.checks), "notes": list(self.notes),
                "refusals": list(self.refusals), "datasets": list(self.datasets),
                "transfers": [t.to_json() for t in self.transfers],
                "drops": list(self.drops), "steps": [s.to_json() for s in self.steps],
                "estimated_bytes": self.estimated_bytes, "available": self.available}


class _Refused(Exception):
    """One refusal, collected into the plan."""


def send_order(tree: Tree) -> tuple[list[Node], list[str]]:
    """The datasets parents and origins first, and the cycles that make that impossible."""
    nodes = {n.name: n for n in tree.ordered()}
    order: list[Node] = []
    placed: set[str] = set()
    visiting: set[str] = set()
    problems: list[str] = []

    def needs(node: Node) -> list[str]:
        parent = node.name.rsplit("/", 1)[0]
        found = [parent] if parent in nodes and node.name != tree.root else []
        origin = node.origin
        if origin is not None and origin.split("@", 1)[0] in nodes:
            found.append(origin.split("@", 1)[0])
        return found

    def place(node: Node) -> None:
        if node.name in placed:
            return
        if node.name in visiting:
            problems.append(f"{node.name} depends on itself through clones; promote a clone "
                            "first (zfs promote)")
            return
        visiting.add(node.name)
        for name in needs(node):
            place(nodes[name])
        visiting.discard(node.name)
        if node.name not in placed:
            placed.add(node.name)
            order.append(node)

    for node in nodes.values():
        place(node)
    return order, sorted(set(problems))


def receive_properties(request: ConvertRequest, node: Node, *, top: bool) -> dict[str, str]:
    """The ``-o`` properties of a dataset's first receive into the new tree."""
    props = {name: value for name, value in sorted(node.local.items())
             if name not in NOT_COPIED and name not in DEFERRED_PROPERTIES}
    if top:
        if request.operation == "decrypt":
            props["encryption"] = "off"
        elif request.own_root:
            old = node.get("encryption")
            props["encryption"] = old if request.operation == "reencrypt" and \
                old not in ("off", "-", "") else "on"
            if request.pbkdf2iters is not None:
                props["pbkdf2iters"] = str(request.pbkdf2iters)
    return props


def _dataset_transfers(request: ConvertRequest, state: ConvertState, node: Node,
                       goal: str, notes: list[str]) -> list[Transfer]:
    new_name = request.new_name(node.name)
    new = state.new.get(new_name)
    shorts = [s.name for s in node.snapshots]
    if goal not in shorts:
        shorts.append(goal)
    goal_full = f"{node.name}@{goal}"
    if new is not None and new.resume_token is not None:
        return [Transfer(node.name, new_name, "resume",
                         SendSpec(raw=False, resume_token=new.resume_token))]
    if new is not None:
        common = node.newest_common(new)
        if common is None:
            raise _Refused(f"{new_name} has no snapshot in common with {node.name}; destroy "
                           f"it (zfs destroy -r {shlex.quote(new_name)}) and run the phase "
                           "again")
        if common.name == goal:
            return []
        return [Transfer(node.name, new_name, "incremental",
                         SendSpec(goal_full, base=f"{node.name}@{common.name}", raw=False),
                         force=True)]
    top = node.name == request.dataset
    props = receive_properties(request, node, top=top)
    with_key = top and request.own_root
    origin = node.origin
    first = f"{node.name}@{shorts[0]}"
    if origin is not None and origin.split("@", 1)[0] in state.old.nodes:
        # -i ORIGIN: one substream, whose receive honours -o origin= (a -I stream is a
        # package, and zfs_receive_package() looks the origin up by GUID instead)
        props["origin"] = request.new_name(origin)
        transfers = [Transfer(node.name, new_name, "clone",
                              SendSpec(first, base=origin, raw=False, intermediates=False),
                              props, with_key)]
    else:
        if origin is not None:
            notes.append(f"{node.name} is a clone of {origin}, outside the tree: it is "
                         "copied whole and is no clone in the new tree")
        transfers = [Transfer(node.name, new_name, "full", SendSpec(first, raw=False), props,
                              with_key)]
    if shorts[0] != goal:
        transfers.append(Transfer(node.name, new_name, "incremental",
                                  SendSpec(goal_full, base=first, raw=False)))
    return transfers


def _check_swap_state(request: ConvertRequest, state: ConvertState, phase: str) -> None:
    verb = f"encroot {request.operation}"
    if state.aside_marker is not None or state.swapped:
        raise _Refused(f"an interrupted {verb} of {request.dataset} is in the middle of its "
                       f"swap; run `{verb} --recover {request.dataset}` (or --phase cutover) "
                       "to finish it")
    marker = state.new_marker
    if state.new.exists and not state.new_ours:
        why = marker.reason if isinstance(marker, NotOurs) else "it carries no encroot marker"
        raise _Refused(f"{request.temp} exists and is not encroot's ({why}); encroot does "
                       "not touch it: rename or destroy it by hand")
    if isinstance(marker, ConvertPhase | ConvertVerified) and \
            marker.operation != request.operation:
        raise _Refused(f"{request.temp} holds an interrupted `encroot {marker.operation}` of "
                       f"{request.dataset}; continue it with `encroot {marker.operation}`, or "
                       f"drop it with `encroot {marker.operation} --recover {request.dataset}`")
    if phase != "initial" and not state.new.exists:
        raise _Refused(f"{request.temp} does not exist: run `{verb} --phase initial "
                       f"{request.dataset}` first")


def _check_tree(request: ConvertRequest, state: ConvertState, key_given: bool,
                checks: list[str], notes: list[str]) -> None:
    target = request.dataset
    top = state.old.top
    assert top is not None
    pool = target.pool
    encrypted = [n for n in state.old.nodes.values() if n.encrypted]
    if request.operation == "encrypt" and encrypted:
        first = encrypted[0]
        raise _Refused(f"{first.name} is already encrypted (encryption root "
                       f"{first.get('encryptionroot')}); encrypt converts unencrypted trees: "
                       f"use `encroot reencrypt {target}` for a new key")
    if request.operation != "encrypt" and not top.encrypted:
        raise _Refused(f"{target} is not encrypted: use `encroot encrypt {target}`"
                       if request.operation == "reencrypt" else
                       f"{target} is not encrypted: nothing to decrypt")
    if request.encrypted_result:
        if state.feature in ("disabled", "-"):
            raise _Refused(f"pool {pool!r} has feature@encryption {state.feature}; enable "
                           f"it first: zpool set feature@encryption=enabled {pool}")
        checks.append(f"pool {pool}: feature@encryption is {state.feature}")
    unloaded = sorted({n.get("encryptionroot") for n in encrypted
                       if n.get("keystatus") != "available"})
    if unloaded:
        raise _Refused(f"the key of {unloaded[0]} is not loaded, and a non-raw send needs it: "
                       f"zfs load-key {shlex.quote(unloaded[0])}")
    if encrypted:
        checks.append("keys of the old tree: loaded (the data is sent decrypted, re-encrypted "
                      "on receive)")
    parent_encrypted = state.parent.get("encryption", "off") not in ("off", "-", "")
    if request.inherit and not parent_encrypted:
        raise _Refused(f"--inherit: the parent of {target} is not encrypted; give a key "
                       "instead")
    if request.own_root and not key_given and not state.new.exists:
        raise _Refused(f"{request.operation} {target}: the new encryption root needs a key "
                       "(--key-file FILE, --key-stdin, the terminal, or -o keylocation=file://)")
    if request.inherit:
        checks.append(f"key: inherited from {state.parent.get('encryptionroot')}")
    for node in encrypted:
        if node.name != target and node.get("encryptionroot") == node.name \
                and request.encrypted_result:
            notes.append(f"{node.name} has its own key today; in the new tree it inherits "
                         f"{target}'s")
    if request.operation == "reencrypt":
        notes.append(f"raw replicas of {target} (zfs send -w elsewhere) cannot take "
                     "incrementals from the new tree (a new master key): send them a new "
                     "full raw stream")
    if request.operation == "decrypt" and parent_encrypted:
        notes.append(f"{target} will be unencrypted below an encrypted parent "
                     "(doctor: plaintext-under-encrypted)")


def _check_dependents(request: ConvertRequest, state: ConvertState,
                      checks: list[str], notes: list[str]) -> None:
    inside = set(state.old.nodes)
    outside = sorted({(f"{node.name}@{snap.name}", clone) for node in state.old.nodes.values()
                      for snap in node.snapshots for clone in snap.clones
                      if clone not in inside})
    if outside and request.keep_old is None:
        shown = ", ".join(f"{clone} (of {snap})" for snap, clone in outside)
        raise _Refused(f"clones outside the tree depend on its snapshots: {shown}; encroot "
                       "does not destroy them: promote or destroy them, or pass --keep-old "
                       "NAME to keep the old tree with them")
    if outside:
        notes.append("clones outside the tree stay clones of the kept old tree")
    bookmarks = [f"{n.name}#{b}" for n in state.old.nodes.values() for b in n.bookmarks]
    if bookmarks:
        notes.append(f"not carried over: bookmarks {', '.join(bookmarks)} (they name the old "
                     "tree's blocks)")
    held = sorted(state.holds)
    old_holds = [f"{tag} on {snap}" for snap in held if snap.split("@")[0] in inside
                 for tag in state.holds[snap]]
    if old_holds:
        notes.append(f"holds placed again on the new snapshots at cutover: "
                     f"{', '.join(old_holds)}")
    volumes = [n.name for n in state.old.nodes.values() if n.is_volume]
    if volumes:
        notes.append(f"volumes cannot be unmounted: stop the users of {', '.join(volumes)} "
                     "before cutover (writes after its final snapshot would be lost)")
    checks.append("dependents: " + ("no clones outside the tree" if not outside else
                                    "kept with the old tree (--keep-old)"))


def plan_phase(request: ConvertRequest, state: ConvertState, phase: str, goal: str, *,
               key_given: bool, estimates: Mapping[str, int] | None = None,
               owner: Owner | None = None, commands: ZfsCommands | None = None) -> PhasePlan:
    """Decide what one phase does (pure); refusals are collected, not raised.

    ``owner``: the process the markers will name (default: this one); ``commands``:
    the builders of the steps' commands (``Zfs.commands``; default: ``zfs`` on $PATH).
    """
    target = request.dataset
    owner = owner or Owner.current()
    commands = commands or ZfsCommands()
    checks: list[str] = []
    notes: list[str] = []
    refusals: list[str] = []
    transfers: list[Transfer] = []
    drops: list[str] = []
    rows: list[dict[str, Any]] = []
    try:
        if target.is_pool_root:
            raise _Refused(f"{target} is a pool's root dataset, which cannot be renamed or "
                           f"destroyed from user space: convert its children one by one "
                           f"(encroot {request.operation} {target}/CHILD), or move the pool "
                           f"to a new one created with -O encryption=on (encroot migrate)")
        if not state.old.exists and not (state.aside_marker or state.verified):
            raise _Refused(f"{target} does not exist")
        _check_swap_state(request, state, phase)
        if request.keep_old is not None and state.keep_old_exists:
            raise _Refused(f"--keep-old {request.keep_old}: a dataset of that name exists")
        _check_tree(request, state, key_given, checks, notes)
        _check_dependents(request, state, checks, notes)
        order, cycles = send_order(state.old)
        if cycles:
            raise _Refused(cycles[0])
        for node in order:
            found = _dataset_transfers(request, state, node, goal, notes)
            transfers += [_estimated(_built(request, t, owner, commands), estimates)
                          for t in found]
            rows.append(_row(request, node))
        drops = sorted((name for name in state.new.nodes
                        if request.old_name(name) not in state.old.nodes),
                       key=lambda n: -n.count("/"))
        needed = sum(t.estimate or 0 for t in transfers) + sum(
            int(n.get("refreservation")) for n in state.old.nodes.values()
            if not state.new.get(request.new_name(n.name))
            and n.get("refreservation").isdigit())
        available = state.available
        if estimates is not None and needed > available:
            raise _Refused(f"not enough space: the {phase} phase needs about "
                           f"{human_bytes(needed)} ({needed} bytes, zfs send -nP estimates "
                           f"and volume reservations), {target.parent} has "
                           f"{human_bytes(available)} ({available} bytes) available")
        if estimates is not None:
            checks.append(f"space: about {human_bytes(needed)} needed, "
                          f"{human_bytes(available)} available")
    except _Refused as refusal:
        refusals.append(str(refusal))
    steps = () if refusals else phase_steps(request, state, phase, goal, owner=owner,
                                            commands=commands)
    return PhasePlan(request.operation, str(target), phase, goal, tuple(checks),
                     tuple(dict.fromkeys(notes)), tuple(refusals), tuple(rows),
                     tuple(transfers), steps, state.available, tuple(drops))


def _built(request: ConvertRequest, transfer: Transfer, owner: Owner,
           commands: ZfsCommands) -> Transfer:
    """The transfer with its marker (the new top's first receive) and its commands."""
    if transfer.target == request.temp and transfer.kind in ("full", "clone"):
        transfer = replace(transfer, marker=dumps(ConvertPhase(
            target=request.dataset, operation=request.operation, phase="initial",
            owner=owner)))
    return replace(transfer, commands=transfer.pipeline(commands))


def _estimated(transfer: Transfer, estimates: Mapping[str, int] | None) -> Transfer:
    if estimates is None:
        return transfer
    return replace(transfer, estimate=estimates.get(transfer.command()))


def _row(request: ConvertRequest, node: Node) -> dict[str, Any]:
    return {"dataset": node.name, "new": request.new_name(node.name), "type": node.type,
            "snapshots": len(node.snapshots), "origin": node.origin,
            "encryption": node.get("encryption"), "encryptionroot": node.get("encryptionroot"),
            "local_properties": dict(node.local)}


def snapshots_missing(old: Node, new: Node | None, upto: Sequence[str] = ()) -> list[str]:
    """Old snapshots the new dataset lacks, or holds with another GUID."""
    have = {} if new is None else {s.name: s.guid for s in new.snapshots}
    return [f"{old.name}@{s.name}" for s in old.snapshots
            if have.get(s.name) != s.guid and (not upto or s.name in upto)]
