"""Where SRC's datasets land on DST, during the transfers and after cutover (pure).

With an encrypted DST root, SRC's whole root is received into the staging
dataset ``DST/encroot-migrate`` and cutover moves each child tree out to its
final name; with an unencrypted one, each child tree is received at its
final name.  Planning, cutover and the checks all ask these functions.
"""

from __future__ import annotations

from .model import MigrateRequest, MigrateState, Node

__all__ = ["current_copy", "migrated_nodes", "received_name", "received_nodes", "staged",
           "top_of"]


def migrated_nodes(request: MigrateRequest, state: MigrateState) -> list[Node]:
    """SRC's datasets that move: every descendant, and the root with ``dataset:NAME``."""
    nodes = [n for n in state.source.subtree(request.source) if n.name != request.source]
    root = state.source.root_node
    if request.root_dataset and root is not None:
        nodes.insert(0, root)
    return nodes


def staged(state: MigrateState) -> bool:
    """Whether SRC is received whole into DST's staging dataset (DST's root is encrypted).

    One replication stream of SRC's root keeps every inheriting child under
    one received encryption root, so cutover derives SRC's key once (PBKDF2,
    seconds under emulation) and runs one ``change-key -i``.  An unencrypted
    DST root cannot take the children over, so they then move per child
    tree, received in place, each an encryption root of its own.
    """
    dst = state.destination
    return dst is not None and dst.root_node is not None and dst.root_node.encrypted


def received_name(request: MigrateRequest, state: MigrateState, name: str) -> str:
    """Where the transfers put a SRC dataset."""
    return request.staged_name(name) if staged(state) else request.destination_name(name)


def received_nodes(request: MigrateRequest, state: MigrateState) -> list[Node]:
    """SRC's datasets the transfers copy: with staging, the root too."""
    if staged(state):
        return state.source.subtree(request.source)
    return migrated_nodes(request, state)


def current_copy(request: MigrateRequest, state: MigrateState, node: Node) -> Node | None:
    """DST's copy of ``node`` where it is now: at its final name once cutover moved it,
    else where it was received."""
    assert state.destination is not None
    if node.name != request.source or request.root_dataset:
        moved = state.destination.get(request.destination_name(node.name))
        if moved is not None:
            return moved
    return state.destination.get(received_name(request, state, node.name))


def top_of(request: MigrateRequest, name: str) -> str:
    """The child tree of SRC's root that ``name`` belongs to (the root for itself)."""
    if name == request.source:
        return name
    relative = name[len(request.source) + 1:]
    return f"{request.source}/{relative.split('/', 1)[0]}"
