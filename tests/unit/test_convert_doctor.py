"""doctor and a conversion's state: the kept old tree (old-copy-kept), an interrupted
conversion (leftover-temporary), a running one, and lookalikes; --fix touches none."""

from __future__ import annotations

import os

from encroot.doctor import AuditState, audit, plan_fixes
from encroot.owned import ConvertKept, ConvertPhase, ConvertReplaced, Owner, dumps
from encroot.owned.owner import process_start

ME = Owner.current()
LIVE = Owner(host=ME.host, boot_id=ME.boot_id, pid=os.getppid(),
             start=process_start(os.getppid()))
DEAD = Owner(host=ME.host, boot_id="an earlier boot", pid=1, start="1")


def fs(name: str, **extra: str) -> dict[str, str]:
    return {"type": "filesystem", "encryption": "aes-256-gcm", "encryptionroot": name,
            "keyformat": "hex", "keylocation": "file:///k", "keystatus": "available",
            "pbkdf2iters": "0", "canmount": "on", "mountpoint": f"/{name}", "mounted": "yes",
            "origin": "-", "receive_resume_token": "-", **extra}


def state_of(props: dict[str, dict[str, str]], local: dict[str, set[str]]) -> AuditState:
    sources = {n: {p: ("local" if p in local.get(n, set()) else "-") for p in v}
               for n, v in props.items()}
    return AuditState(props, sources, set(), {"tank": "active"})


def findings(state: AuditState) -> list[tuple[str, str, str]]:
    return [(f.dataset, f.code, f.severity) for f in audit(state, key_file=lambda path, fmt: None)]


def test_a_kept_old_tree_is_old_copy_kept_and_fix_leaves_it() -> None:
    kept = dumps(ConvertKept(target="tank/data", operation="reencrypt"))
    state = state_of({"tank": fs("tank"), "tank/data": fs("tank/data"),
                      "tank/kept": fs("tank/kept", canmount="noauto", mounted="no",
                                      **{"encroot:convert-replaced": kept})},
                     {"tank/kept": {"encroot:convert-replaced"}})
    found = [f for f in audit(state, key_file=lambda path, fmt: None) if f.code == "old-copy-kept"]
    assert [(f.dataset, f.severity) for f in found] == [("tank/kept", "warning")]
    assert "old key" in found[0].message
    assert found[0].fix_line == "zfs destroy -r tank/kept"
    plan = plan_fixes(found, state)
    assert not plan.fixes and "your decision" in plan.not_repaired[0].reason


def test_an_interrupted_conversion_is_a_leftover_and_its_new_root_is_no_inherit_candidate(
) -> None:
    phase = dumps(ConvertPhase(target="tank/my data", operation="encrypt", phase="initial",
                               owner=DEAD))
    temp = "tank/my data.encroot-convert"
    state = state_of({"tank": fs("tank"), "tank/my data": fs("tank/my data", encryption="off"),
                      temp: fs(temp, **{"encroot:convert": phase})},
                     {temp: {"encroot:convert"}})
    found = [f for f in audit(state, key_file=lambda path, fmt: None) if f.dataset == temp]
    assert [(f.dataset, f.code) for f in found] == [(temp, "leftover-temporary")]
    assert found[0].fix_line == "encroot encrypt --phase catch-up 'tank/my data'"
    plan = plan_fixes(found, state)
    assert not plan.fixes


def test_a_running_conversion_and_an_interrupted_swap() -> None:
    running = dumps(ConvertPhase(target="tank/a", operation="decrypt", phase="cutover",
                                 owner=LIVE))
    replaced = dumps(ConvertReplaced(target="tank/b", operation="reencrypt", owner=DEAD))
    state = state_of({"tank": fs("tank"), "tank/a": fs("tank/a"),
                      "tank/a.encroot-convert": fs("tank/a.encroot-convert",
                                                   **{"encroot:convert": running}),
                      "tank/b.encroot-convert-old": fs(
                          "tank/b.encroot-convert-old",
                          **{"encroot:convert-replaced": replaced})},
                     {"tank/a.encroot-convert": {"encroot:convert"},
                      "tank/b.encroot-convert-old": {"encroot:convert-replaced"}})
    got = findings(state)
    assert ("tank/a.encroot-convert", "operation-in-progress", "info") in got
    assert ("tank/b.encroot-convert-old", "leftover-temporary", "warning") in got
    fix = next(f for f in audit(state, key_file=lambda path, fmt: None)
               if f.dataset == "tank/b.encroot-convert-old")
    assert fix.fix_line == "encroot reencrypt --recover tank/b"


def test_a_lookalike_without_a_marker_is_not_ours() -> None:
    state = state_of({"tank": fs("tank"), "tank/x.encroot-convert": fs("tank/x.encroot-convert")},
                     {})
    assert ("tank/x.encroot-convert", "lookalike-unowned", "warning") in findings(state)
