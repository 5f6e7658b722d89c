"""Reading what a conversion plans from: a constant number of bulk reads.

``read_state`` takes one ``zpool get``, one ``zfs get -d 1`` of X's parent
(which also shows X, ``X.encroot-convert`` and ``X.encroot-convert-old``),
one recursive ``zfs get`` of every tree that exists (datasets, snapshots,
bookmarks of the old tree, the new one and a tree moved aside by a swap,
named together), one ``zfs get -s local,received all`` of the old tree and
the aside one, and one ``zfs holds`` for every snapshot that has user holds:
at most five processes, whatever the number of datasets and snapshots.  A
cutover reads the state again after each of its steps (the swap decides from
what ZFS shows), so each process saved here is saved several times while the
tree is unmounted.  Those reads leave the snapshots out (``details=False``):
``zfs get`` pays for every object it lists (about 10 ms a snapshot under the
lab's emulation, where a tree of 14 datasets and 55 snapshots took 0.3 s
without its snapshots and 1 s with them), and only the swap's last move needs
them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from ..errors import DatasetNotFound
from ..names import DatasetName, in_tree
from ..owned import CONVERT_MARKER, CONVERT_REPLACED, ConvertVerified
from ..records import replace
from ..zfs import Zfs
from ..zfs.parse import PropertyTable
from .model import ConvertRequest, ConvertState, Node, Snap, Tree

__all__ = ["STATE_PROPERTIES", "read_details", "read_parent", "read_state", "read_tree",
           "read_trees", "reread_trees"]

STATE_PROPERTIES = (
    "type", "guid", "createtxg", "origin", "encryption", "encryptionroot", "keyformat",
    "keylocation", "keystatus", "mounted", "mountpoint", "canmount", "userrefs", "clones",
    "receive_resume_token", "written", "referenced", "refreservation", "available",
    CONVERT_MARKER, CONVERT_REPLACED,
)
_MARKERS = (CONVERT_MARKER, CONVERT_REPLACED)


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _table(zfs: Zfs, names: list[str], properties: tuple[str, ...], **options: object
           ) -> PropertyTable:
    try:
        return zfs.get(names, properties, use_json=False, **options)  # type: ignore[arg-type]
    except DatasetNotFound:
        return PropertyTable()


def read_tree(zfs: Zfs, root: str, *, local: bool = False, snapshots: bool = True) -> Tree:
    """Every filesystem, volume, snapshot and bookmark under ``root`` in one ``zfs get``
    (and with ``local`` its locally set or received properties in a second one;
    without ``snapshots`` the filesystems and volumes alone)."""
    return read_trees(zfs, [root], local=[root] if local else (), snapshots=snapshots)[root]


def read_trees(zfs: Zfs, roots: Sequence[str], *, local: Collection[str] = (),
               snapshots: bool = True) -> dict[str, Tree]:
    """The trees under ``roots`` from one recursive ``zfs get`` naming them all (and
    the locally set or received properties of those in ``local`` from a second).

    Without ``snapshots`` the read lists filesystems and volumes only, and every
    node's ``snapshots`` and ``bookmarks`` stay empty: for callers that decide from
    datasets alone.  A root that vanished between the caller's look and this read
    (``zfs get`` then fails as a whole) makes each tree be read on its own, as it
    stands.
    """
    if not roots:
        return {}
    types = ("filesystem", "volume") + (("snapshot", "bookmark") if snapshots else ())
    table = _table(zfs, list(roots), STATE_PROPERTIES, recursive=True, types=types)
    if len(roots) > 1 and not all(root in table for root in roots):
        return {root: read_tree(zfs, root, local=root in local, snapshots=snapshots)
                for root in roots}
    wanted = [root for root in roots if root in local and root in table]
    local_table = _local_table(zfs, wanted)
    return {root: _tree(root, table, local_table) for root in roots}


def _local_table(zfs: Zfs, roots: list[str]) -> PropertyTable:
    """The properties set locally or received of the filesystems and volumes under
    ``roots``, in one ``zfs get`` (none when ``roots`` is empty)."""
    return _table(zfs, roots, ("all",), recursive=True, types=("filesystem", "volume"),
                  sources=("local", "received")) if roots else PropertyTable()


def _local_values(local_table: PropertyTable, name: str) -> dict[str, str]:
    return {p: v.value for p, v in local_table.datasets.get(name, {}).items()}


def _tree(root: str, table: PropertyTable, local_table: PropertyTable) -> Tree:
    """The part of ``table`` under ``root``, as a ``Tree``."""
    rows = {name: props for name, props in table.datasets.items() if in_tree(name, root)}
    snaps: dict[str, list[Snap]] = {}
    marks: dict[str, list[str]] = {}
    for name, props in rows.items():
        if "@" in name:
            dataset, short = name.split("@", 1)
            clones = props.get("clones")
            snaps.setdefault(dataset, []).append(Snap(
                short, props["guid"].value if "guid" in props else "",
                _int(props["createtxg"].value if "createtxg" in props else ""),
                _int(props["userrefs"].value if "userrefs" in props else ""),
                tuple(c for c in (clones.value if clones else "").split(",") if c
                      and c != "-")))
        elif "#" in name:
            dataset, short = name.split("#", 1)
            marks.setdefault(dataset, []).append(short)
    nodes = {}
    for name, props in rows.items():
        if "@" in name or "#" in name:
            continue
        local_values = _local_values(local_table, name)
        nodes[name] = Node(
            name, {p: v.value for p, v in props.items()}, local_values,
            tuple(sorted(snaps.get(name, []), key=lambda s: s.txg)),
            tuple(sorted(marks.get(name, []))),
            {p: props[p].source for p in _MARKERS if p in props})
    return Tree(root, nodes)


def _family(zfs: Zfs, target: DatasetName) -> Mapping[str, Mapping[str, str]]:
    if target.parent is None:
        return {}
    table = _table(zfs, [target.parent], ("type", "encryption", "encryptionroot",
                                          "keystatus", "available"),
                   depth=1, types=("filesystem", "volume"))
    return {name: {p: v.value for p, v in props.items()} for name, props in
            table.datasets.items()}


def read_state(zfs: Zfs, request: ConvertRequest, *, pool: bool = True,
               details: bool = True) -> ConvertState:
    """The old tree, the new one, a tree moved aside by a swap, the parent and the pool.

    ``pool=False``: no ``zpool get`` (the swap, which plans no transfer, needs no
    ``feature@encryption``; ``ConvertState.feature`` then says it was not read).
    ``details=False``: no snapshots or bookmarks, no local properties, no holds (a
    cheaper tree read and two processes fewer; ``read_details`` adds them when the
    swap's last move needs them).
    The pool feature and the parent's family are read at the same time
    (``Zfs.concurrently``).
    """
    target = request.dataset
    feature, family = zfs.concurrently(
        lambda: zfs.pool_get(target.pool, ["feature@encryption"]).get(
            "feature@encryption", "-") if pool else "(not read)",
        lambda: _family(zfs, target))
    present = [name for name in (str(target), request.temp) if name in family]
    aside_name = _aside_name(request, family)
    if aside_name and aside_name not in present:
        present.append(aside_name)
    trees = read_trees(zfs, present, local=(str(target), aside_name) if details else (),
                       snapshots=details)
    old = trees.get(str(target), Tree(str(target)))
    new = trees.get(request.temp, Tree(request.temp))
    if not aside_name:
        aside_name = _kept_name(new, old)
        if aside_name:
            trees = {aside_name: read_tree(zfs, aside_name, local=details, snapshots=details)}
    aside = trees.get(aside_name, Tree("")) if aside_name else Tree("")
    keep_exists = request.keep_old is not None and (
        request.keep_old in family or (aside_name != request.keep_old
                                       and zfs.exists(request.keep_old)))
    state = ConvertState(old, new, aside, family.get(target.parent or "", {}), feature,
                         keep_old_exists=keep_exists, details=details)
    return replace(state, holds=_holds(zfs, state)) if details else state


def read_details(zfs: Zfs, state: ConvertState) -> ConvertState:
    """``state`` (read with ``details=False``) with its trees read again with their
    snapshots and bookmarks, the local properties of X's tree and of the tree aside,
    in two ``zfs get``, and the holds, in one ``zfs holds``."""
    if state.details:
        return state
    roots = [tree.root for tree in (state.old, state.new, state.aside) if tree.exists]
    local = [tree.root for tree in (state.old, state.aside) if tree.exists]
    trees = read_trees(zfs, roots, local=local)

    def again(tree: Tree) -> Tree:
        return trees.get(tree.root, tree) if tree.exists else tree

    state = replace(state, old=again(state.old), new=again(state.new),
                    aside=again(state.aside), details=True)
    return replace(state, holds=_holds(zfs, state))


def _holds(zfs: Zfs, state: ConvertState) -> dict[str, tuple[str, ...]]:
    """The user holds of every snapshot of the three trees that has some."""
    held = [f"{node.name}@{snap.name}" for tree in (state.old, state.new, state.aside)
            for node in tree.nodes.values() for snap in node.snapshots if snap.userrefs]
    return {snap: tuple(tags) for snap, tags in zfs.holds(held).items()} if held else {}


def reread_trees(zfs: Zfs, request: ConvertRequest, before: ConvertState, *,
                 new_exists: bool) -> ConvertState:
    """``before`` with the old and new trees read again in one ``zfs get``: between
    rounds of transfers only snapshots and the new tree change.

    The parent, the pool, the tree moved aside, the holds and the old tree's
    local properties stay as ``before`` read them (a snapshot changes none of
    them); if the old tree gained or lost a dataset meanwhile, everything is
    read again (``read_state``).  ``new_exists``: the new tree's top is there
    (else a read naming it would fail as a whole).
    """
    roots = [str(request.dataset)] + ([request.temp] if new_exists else [])
    trees = read_trees(zfs, roots)
    old = trees[str(request.dataset)]
    if set(old.nodes) != set(before.old.nodes):
        return read_state(zfs, request)
    old = replace(old, nodes={name: replace(node, local=before.old.nodes[name].local)
                              for name, node in old.nodes.items()})
    return replace(before, old=old, new=trees.get(request.temp, Tree(request.temp)))


def read_parent(zfs: Zfs, target: DatasetName) -> Mapping[str, str]:
    """The properties ``read_state`` gives as ``ConvertState.parent``, in one ``zfs get``."""
    return _family(zfs, target).get(target.parent or "", {})


def _aside_name(request: ConvertRequest, family: Mapping[str, Mapping[str, str]]) -> str:
    """Where an interrupted swap put the old tree, when its default name shows it:
    ``X.encroot-convert-old`` beside X."""
    default = request.dataset + ".encroot-convert-old"
    return default if default in family else ""


def _kept_name(new: Tree, old: Tree) -> str:
    """Otherwise the ``--keep-old`` name the verified marker records, if any."""
    for tree in (new, old):
        top = tree.top
        marker = None if top is None else top.marker(CONVERT_MARKER)
        if isinstance(marker, ConvertVerified) and marker.keep_old:
            return marker.keep_old
    return ""
