"""Planning a conversion (pure): send order, properties, refusals, notes, space."""

from __future__ import annotations

import pytest

from encroot.convert import ConvertRequest, ConvertState, Node, Snap, Tree, plan_phase, send_order
from encroot.convert.plan import receive_properties
from encroot.errors import InputError
from encroot.names import DatasetName
from encroot.owned import ConvertPhase, NotOurs, dumps

GOAL = "encroot-convert-20260101-000000"


def node(name: str, *snaps: str, local: dict[str, str] | None = None, **values: str) -> Node:
    props = {"type": "filesystem", "encryption": "off", "mounted": "yes", "canmount": "on",
             "mountpoint": "/" + name, "createtxg": "1", "written": "0", **values}
    return Node(name, props, local or {},
                tuple(Snap(s, f"{name}@{s}".__hash__().__str__().lstrip("-"), i + 1)
                      for i, s in enumerate(snaps)))


def tree(root: str, *nodes: Node) -> Tree:
    return Tree(root, {n.name: n for n in nodes})


def state(*nodes: Node, new: Tree | None = None, **extra: object) -> ConvertState:
    options: dict[str, object] = {"parent": {"encryption": "off", "available": str(10 << 30)},
                                  "feature": "enabled", **extra}
    return ConvertState(tree("tank/data", *nodes), new or Tree("tank/data.encroot-convert"),
                        **options)  # type: ignore[arg-type]


ENCRYPT = ConvertRequest("encrypt", DatasetName("tank/data"))


def test_a_tree_is_sent_per_dataset_parents_and_origins_first() -> None:
    base = node("tank/data", "a", "b", createtxg="1")
    clone = node("tank/data/aclone", "c", origin="tank/data/z/deep@x", createtxg="9")
    deep_parent = node("tank/data/z", "a", createtxg="2")
    deep = node("tank/data/z/deep", "x", createtxg="3")
    order, cycles = send_order(tree("tank/data", base, clone, deep_parent, deep))
    assert [n.name for n in order] == ["tank/data", "tank/data/z", "tank/data/z/deep",
                                       "tank/data/aclone"]
    assert not cycles


def test_a_clone_cycle_is_refused() -> None:
    top = node("tank/data", "a", origin="tank/data/child@s")
    child = node("tank/data/child", "s")
    plan = plan_phase(ENCRYPT, state(top, child), "initial", GOAL, key_given=True)
    assert plan.refusals and "promote" in plan.refusals[0]


def test_initial_transfers_carry_properties_and_the_key_only_on_the_top() -> None:
    top = node("tank/data", "a", "b", local={"compression": "lz4", "com.x:tag": "v 1",
                                             "mountpoint": "/srv"})
    vol = node("tank/data/vol", type="volume", local={"volsize": "1048576",
                                                      "refreservation": "2000000"})
    clone = node("tank/data/c", "s", origin="tank/data@a", createtxg="5")
    plan = plan_phase(ENCRYPT, state(top, vol, clone), "initial", GOAL, key_given=True)
    assert not plan.refusals
    rows = [(t.kind, t.source, t.spec.describe(), t.with_key) for t in plan.transfers]
    assert rows == [
        ("full", "tank/data", "zfs send tank/data@a", True),
        ("incremental", "tank/data", f"zfs send -I tank/data@a tank/data@{GOAL}", False),
        ("full", "tank/data/vol", f"zfs send tank/data/vol@{GOAL}", False),
        ("clone", "tank/data/c", "zfs send -i tank/data@a tank/data/c@s", False),
        ("incremental", "tank/data/c", f"zfs send -I tank/data/c@s tank/data/c@{GOAL}", False),
    ]
    first = plan.transfers[0]
    assert first.properties == {"com.x:tag": "v 1", "compression": "lz4", "encryption": "on"}
    assert first.target == "tank/data.encroot-convert"
    assert plan.transfers[2].properties == {"refreservation": "2000000"}  # no volsize
    assert plan.transfers[3].properties["origin"] == "tank/data.encroot-convert@a"
    assert plan.transfers[4].properties == {}
    assert "keylocation=file:///dev/fd/N" in first.command()


def test_catch_up_sends_incrementals_from_the_newest_common_snapshot() -> None:
    top = node("tank/data", "a", "b")
    child = node("tank/data/new child", "b")
    copy = Node("tank/data.encroot-convert", {"type": "filesystem"}, {},
                (Snap("a", top.snapshots[0].guid, 1),),
                sources={"encroot:convert": "local"})
    marked = Node(copy.name, {**copy.values, "encroot:convert": dumps(ConvertPhase(
        target="tank/data", operation="encrypt", phase="initial"))}, {}, copy.snapshots,
        sources=copy.sources)
    new = Tree("tank/data.encroot-convert", {copy.name: marked})
    plan = plan_phase(ENCRYPT, state(top, child, new=new), "catch-up", GOAL, key_given=False)
    assert not plan.refusals, plan.refusals
    assert [(t.kind, t.spec.describe(), t.force) for t in plan.transfers] == [
        ("incremental", f"zfs send -I tank/data@a tank/data@{GOAL}", True),
        ("full", "zfs send 'tank/data/new child@b'".replace("'", ""), False),
        ("incremental", f"zfs send -I tank/data/new child@b tank/data/new child@{GOAL}",
         False),
    ]


def test_a_resumable_receive_is_resumed_first() -> None:
    top = node("tank/data", "a")
    partial = Node("tank/data.encroot-convert",
                   {"type": "filesystem", "receive_resume_token": "1-ab-cd-ef",
                    "encroot:convert": dumps(ConvertPhase(target="tank/data",
                                                          operation="encrypt",
                                                          phase="initial"))},
                   sources={"encroot:convert": "local"})
    new = Tree(partial.name, {partial.name: partial})
    plan = plan_phase(ENCRYPT, state(top, new=new), "initial", GOAL, key_given=True)
    assert [(t.kind, t.command().split(" |")[0]) for t in plan.transfers] == [
        ("resume", "zfs send -t 1-ab-cd-ef")]  # the exact command


@pytest.mark.parametrize(("request_", "the_state", "words"), [
    (ENCRYPT, state(node("tank/data", encryption="aes-256-gcm", encryptionroot="tank/data",
                         keystatus="available")), "use `encroot reencrypt tank/data`"),
    (ConvertRequest("reencrypt", DatasetName("tank/data")), state(node("tank/data")),
     "use `encroot encrypt tank/data`"),
    (ENCRYPT, state(node("tank/data"), feature="disabled"),
     "zpool set feature@encryption=enabled tank"),
    (ConvertRequest("decrypt", DatasetName("tank/data"), allow_plaintext=True),
     state(node("tank/data", encryption="aes-256-gcm", encryptionroot="tank/data",
                keystatus="unavailable")), "zfs load-key tank/data"),
    (ConvertRequest("encrypt", DatasetName("tank/data"), inherit=True), state(node("tank/data")),
     "--inherit: the parent of tank/data is not encrypted"),
    (ENCRYPT, state(node("tank/data", "s"), parent={"encryption": "off", "available": "10"}),
     "not enough space"),
])
def test_refusals(request_: ConvertRequest, the_state: ConvertState | None, words: str) -> None:
    current = the_state or ConvertState(Tree("tank"), Tree("tank.encroot-convert"))
    plan = plan_phase(request_, current, "initial", GOAL, key_given=True,
                      estimates={} if words != "not enough space" else None)
    if words == "not enough space":
        sizes = {t.command(): 1 << 20 for t in plan.transfers}
        plan = plan_phase(request_, current, "initial", GOAL, key_given=True, estimates=sizes)
    assert plan.refusals and words in plan.refusals[0], plan.refusals


def test_space_refusal_names_both_numbers() -> None:
    current = state(node("tank/data", "s"), parent={"encryption": "off", "available": "10"})
    draft = plan_phase(ENCRYPT, current, "initial", GOAL, key_given=True)
    plan = plan_phase(ENCRYPT, current, "initial", GOAL, key_given=True,
                      estimates={t.command(): 5000 for t in draft.transfers})
    assert "10000 bytes" in plan.refusals[0] and "(10 bytes) available" in plan.refusals[0]


def test_a_key_is_needed_only_to_create_the_new_root() -> None:
    plan = plan_phase(ENCRYPT, state(node("tank/data")), "initial", GOAL, key_given=False)
    assert "needs a key" in plan.refusals[0]


def test_a_foreign_sibling_in_the_way_is_refused_and_left_alone() -> None:
    foreign = Node("tank/data.encroot-convert", {"type": "filesystem"})
    plan = plan_phase(ENCRYPT, state(node("tank/data"), new=Tree(foreign.name,
                                                                 {foreign.name: foreign})),
                      "initial", GOAL, key_given=True)
    assert "is not encroot's" in plan.refusals[0]


def test_what_does_not_carry_over_is_said() -> None:
    top = Node("tank/data", {"type": "filesystem", "encryption": "aes-256-gcm",
                             "encryptionroot": "tank/data", "keystatus": "available"},
               {}, (Snap("a", "1", 1, userrefs=1, clones=("tank/other",)),), ("bm",))
    current = state(top, holds={"tank/data@a": ("keep",)})
    request = ConvertRequest("reencrypt", DatasetName("tank/data"))
    plan = plan_phase(request, current, "initial", GOAL, key_given=True)
    assert "clones outside the tree" in plan.refusals[0] and "--keep-old" in plan.refusals[0]
    kept = ConvertRequest("reencrypt", DatasetName("tank/data"), keep_old=DatasetName("tank/kept"))
    plan = plan_phase(kept, current, "initial", GOAL, key_given=True)
    text = " ".join(plan.notes)
    assert "bookmarks tank/data#bm" in text and "keep on tank/data@a" in text
    assert "raw replicas" in text


def test_reencrypt_keeps_the_cipher_decrypt_turns_it_off() -> None:
    top = node("tank/data", encryption="aes-128-ccm")
    assert receive_properties(ConvertRequest("reencrypt", DatasetName("tank/data")), top,
                              top=True)["encryption"] == "aes-128-ccm"
    decrypt = ConvertRequest("decrypt", DatasetName("tank/data"), allow_plaintext=True)
    assert receive_properties(decrypt, top, top=True)["encryption"] == "off"
    inherit = ConvertRequest("reencrypt", DatasetName("tank/data"), inherit=True)
    assert "encryption" not in receive_properties(inherit, top, top=True)


def test_cutover_steps_swap_only_after_verification() -> None:
    plan = plan_phase(ENCRYPT, state(node("tank/data", "a")), "cutover", GOAL, key_given=True)
    assert "does not exist" in plan.refusals[0]  # no initial phase ran
    old = node("tank/data", "a")
    copy = Node("tank/data.encroot-convert", {"type": "filesystem", "encroot:convert": dumps(
        ConvertPhase(target="tank/data", operation="encrypt", phase="initial"))}, {},
        old.snapshots, sources={"encroot:convert": "local"})
    current = state(old, new=Tree(copy.name, {copy.name: copy}))
    plan = plan_phase(ENCRYPT, current, "cutover", GOAL, key_given=False)
    assert not plan.refusals, plan.refusals
    actions = [s.action.value for s in plan.steps]
    assert actions.index("verify") < actions.index("mark-replaced") < actions.index("rename")
    assert actions[0] == "unmount" and actions[-1] == "clear"


@pytest.mark.parametrize(("args", "words"), [
    ({"operation": "decrypt"}, "--allow-plaintext"),
    ({"operation": "decrypt", "allow_plaintext": True, "keyformat": "hex"}, "-o keyformat"),
    ({"operation": "encrypt", "inherit": True, "keyformat": "hex"}, "--inherit"),
    ({"operation": "encrypt", "keyformat": "base64"}, "use hex, raw or passphrase"),
    ({"operation": "encrypt", "keylocation": "file://relative"}, "file:///ABSOLUTE/PATH"),
    ({"operation": "encrypt", "keyformat": "hex", "pbkdf2iters": 200000}, "passphrase"),
    ({"operation": "encrypt", "pbkdf2iters": 1000}, "at least 100000"),
    ({"operation": "encrypt", "keep_old": "tank/data/old"}, "must be outside"),
    ({"operation": "encrypt", "keep_old": "other/old"}, "must be in pool"),
    ({"operation": "encrypt", "phase": "later"}, "--phase"),
    ({"operation": "encrypt", "dataset": "tank"}, "pool's root dataset"),
])
def test_bad_requests_name_the_option_and_the_rule(args: dict[str, object],
                                                   words: str) -> None:
    operation = args.pop("operation")
    dataset = args.pop("dataset", "tank/data")
    with pytest.raises(InputError) as caught:
        ConvertRequest(operation, dataset, **args)  # type: ignore[arg-type]
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_names_with_spaces_and_the_suffixes() -> None:
    request = ConvertRequest("encrypt", DatasetName("tank/my data"))
    assert request.temp == "tank/my data.encroot-convert"
    assert request.old_aside == "tank/my data.encroot-convert-old"
    assert request.new_name("tank/my data/a b@s") == "tank/my data.encroot-convert/a b@s"
    assert request.phases == ("initial", "cutover")
    with pytest.raises(InputError):
        ConvertRequest("encrypt", DatasetName("tank/" + "x" * 240))  # no room for the suffix


def test_an_unparsable_marker_is_not_ours() -> None:
    foreign = Node("tank/data.encroot-convert", {"encroot:convert": "{garbage"},
                   sources={"encroot:convert": "local"})
    assert isinstance(foreign.marker("encroot:convert"), NotOurs)
