"""Read pytest's JUnit XML files and summarise them: one line per run, the slowest tests.

``./dev test`` runs the host unit tests and then the real-ZFS tests once per
OpenZFS version, each writing ``junit.xml`` into its own folder under
``lab-out/``.  ``summarise`` turns those files into the lines printed at the
end, closing with the plain ``N passed, N failed`` line that CI reads.  A
run whose file is missing (the guest died before pytest wrote it) counts as
failed, never as passed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path

from ..records import record
from .parallel import PLANNED

__all__ = ["Case", "RunSummary", "read_run", "summarise"]


@record(frozen=True)
class Case:
    """One test case: its id, seconds and outcome (passed, failed, error or skipped)."""

    name: str
    seconds: float
    outcome: str
    reason: str = ""


@record(frozen=True)
class RunSummary:
    """The tests of one run (the host's unit tests, or one OpenZFS version's lab tests)."""

    label: str
    cases: tuple[Case, ...] = ()
    missing: str | None = None
    zfs_version: str = ""

    def count(self, outcome: str) -> int:
        return sum(1 for case in self.cases if case.outcome == outcome)

    @property
    def failed(self) -> int:
        """Failures and errors; a run without results counts as one failure."""
        return self.count("failed") + self.count("error") + (1 if self.missing else 0)

    @property
    def seconds(self) -> float:
        return sum(case.seconds for case in self.cases)

    def line(self) -> str:
        if self.missing:
            return f"{self.label}: no results ({self.missing})"
        version = f" ({self.zfs_version})" if self.zfs_version else ""
        skipped = self.count("skipped")
        return (f"{self.label}{version}: {self.count('passed')} passed, {self.failed} failed"
                + (f", {skipped} skipped" if skipped else "")
                + f" in {self.seconds / 60:.1f} min of test time")


def _outcome(element: ElementTree.Element) -> tuple[str, str]:
    for tag, outcome in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
        child = element.find(tag)
        if child is not None:
            return outcome, (child.get("message") or "").strip()
    return "passed", ""


def read_run(label: str, folder: Path) -> RunSummary:
    """The summary of ``folder/junit.xml``, or of every ``folder/junit-*.xml`` that
    parallel workers wrote (and ``zfs-version.txt`` where the lab wrote it)."""
    single = folder / "junit.xml"
    paths = [single] if single.exists() else sorted(folder.glob("junit-*.xml"))
    if not paths:
        return RunSummary(label, missing=f"{single} was not written")
    planned = folder / PLANNED
    if not single.exists() and planned.is_file():
        absent = [name for name in planned.read_text().split() if not (folder / name).exists()]
        if absent:
            return RunSummary(label, missing=f"{', '.join(absent)} not written in {folder}")
    cases = []
    for path in paths:
        try:
            # our own pytest wrote this file in our own guest: trusted input
            root = ElementTree.parse(path).getroot()  # noqa: S314
        except ElementTree.ParseError as exc:
            return RunSummary(label, missing=f"{path}: {exc}")
        for element in root.iter("testcase"):
            outcome, reason = _outcome(element)
            name = f"{element.get('classname', '')}::{element.get('name', '')}"
            cases.append(Case(name, float(element.get("time") or 0.0), outcome, reason))
    version_file = folder / "zfs-version.txt"
    version = ""
    if version_file.is_file():
        lines = version_file.read_text(errors="replace").split()
        version = lines[0] if lines else ""
    return RunSummary(label, tuple(cases), zfs_version=version)


def summarise(runs: Sequence[RunSummary], *, slowest: int = 10) -> list[str]:
    """Lines for the end of ``./dev test``: each run, its slowest tests, skips, the total.

    The last line is ``total: N passed, N failed`` (with ``, N skipped`` when
    any were), the plain closing line CI reads.
    """
    lines = []
    for run in runs:
        lines.append(run.line())
        for case in run.cases:
            if case.outcome in ("failed", "error"):
                lines.append(f"  {case.outcome.upper()}: {case.name}")
            elif case.outcome == "skipped":
                lines.append(f"  SKIPPED: {case.name}: {case.reason}")
        ranked = sorted(run.cases, key=lambda case: case.seconds, reverse=True)[:slowest]
        if ranked and slowest:
            lines.append(f"  slowest {len(ranked)}:")
            lines += [f"    {case.seconds:7.1f} s  {case.name}" for case in ranked]
    passed = sum(run.count("passed") for run in runs)
    failed = sum(run.failed for run in runs)
    skipped = sum(run.count("skipped") for run in runs)
    lines.append(f"total: {passed} passed, {failed} failed"
                 + (f", {skipped} skipped" if skipped else ""))
    return lines
