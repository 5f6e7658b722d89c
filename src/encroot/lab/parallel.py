"""Run the lab's pytest selection in several pytest processes at once, inside one guest.

One guest under TCG keeps only about one of its two emulated CPUs busy: a ZFS
test mostly waits for its pool's transaction groups, one after the other.
Two guests side by side slow each other down (each translates the same code
for itself), so the better use of the second core is a second pytest process
in the same guest, working on other pools.

``python3 -m encroot.lab.parallel --workers N --out DIR -- PYTEST ARGS`` runs
in the guest (``encroot lab test --workers N``):

1. ``pytest --collect-only`` with the arguments gives the selected test ids;
2. the ids are grouped by module, since a module's tests share module-scoped
   fixtures (saved pools, a migrated pair) and must run in one process;
3. each worker takes the module expected to take longest among those left
   (measured seconds per test of each module, ``--weights``, else 30 s, times
   its selected tests) and runs pytest on its ids, writing
   ``DIR/junit-MODULE.xml``.

Tests of different modules must not touch each other's pools or processes:
pool names carry the pytest process's id (``tests/zfs/conftest.py``), and a
test that looks for or kills processes matches its own pool's name.

Standard library only: this module runs with the guest's Python, from the
copy of the package the guest makes at boot.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..records import record

__all__ = ["Module", "collect", "group", "main", "order", "parse_collected", "read_weights"]

PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
UNKNOWN_TEST_SECONDS = 30.0
PLANNED = "junit-planned.txt"


@record(frozen=True)
class Module:
    """The selected tests of one test module, run together by one worker."""

    path: str
    ids: tuple[str, ...]

    @property
    def stem(self) -> str:
        return Path(self.path).stem

    @property
    def junit_name(self) -> str:
        """The module's result file in the output folder (listed in ``PLANNED`` too)."""
        return f"junit-{self.stem}.xml"


def parse_collected(output: str) -> list[str]:
    """Test ids from ``pytest --collect-only -q`` output (``path::name[param]`` lines)."""
    return [line.strip() for line in output.splitlines()
            if "::" in line and not line.startswith(("=", " "))]


def group(ids: Iterable[str]) -> list[Module]:
    """Test ids grouped by module, modules and ids in collection order."""
    modules: dict[str, list[str]] = {}
    for test_id in ids:
        modules.setdefault(test_id.split("::", 1)[0], []).append(test_id)
    return [Module(path, tuple(found)) for path, found in modules.items()]


def read_weights(path: Path | None) -> dict[str, float]:
    """Expected seconds per test of each module, from ``SECONDS MODULE`` lines (``#``
    comments): a run may select only some of a module's tests (2.1's and 2.4's sets).

    The table only orders the work, so a missing file or a bad line is ignored.
    """
    weights: dict[str, float] = {}
    try:
        text = path.read_text() if path else ""
    except OSError:
        return weights
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) == 2:
            try:
                weights[fields[1]] = float(fields[0])
            except ValueError:
                continue
    return weights


def order(modules: Sequence[Module], weights: dict[str, float]) -> list[Module]:
    """Longest expected first, so that no long module starts last (LPT scheduling).

    A module the table does not know weighs ``UNKNOWN_TEST_SECONDS`` per test.
    """
    def weight(module: Module) -> float:
        return weights.get(module.path, UNKNOWN_TEST_SECONDS) * len(module.ids)

    return sorted(modules, key=weight, reverse=True)


def collect(pytest_args: Sequence[str]) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    done = subprocess.run([*PYTEST, "--collect-only", "-q", *pytest_args],
                          capture_output=True, text=True, check=False)
    return parse_collected(done.stdout), done


class _Workers:
    """A queue of modules shared by worker threads, each running pytest processes."""

    def __init__(self, modules: list[Module], out: Path) -> None:
        self.queue = modules
        self.out = out
        self.lock = threading.Lock()
        self.failed: list[str] = []

    def next_module(self) -> Module | None:
        with self.lock:
            return self.queue.pop(0) if self.queue else None

    def work(self, number: int) -> None:
        while (module := self.next_module()) is not None:
            started = time.monotonic()
            log = self.out / f"pytest-{module.stem}.log"
            with open(log, "w") as handle:
                status = subprocess.run(
                    [*PYTEST, "-q", f"--junitxml={self.out / module.junit_name}",
                     *module.ids], stdout=handle, stderr=subprocess.STDOUT, check=False
                ).returncode
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            with self.lock:
                if status != 0:
                    self.failed.append(module.path)
                print(f"[worker {number}] {module.path}: {tail[0].strip('= ')} "
                      f"({time.monotonic() - started:.0f} s, exit {status})", flush=True)
                if status != 0:
                    print(log.read_text(errors="replace"), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m encroot.lab.parallel")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", type=Path,
                        help="SECONDS MODULE lines: measured seconds per test, to order by")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    ids, collected = collect(pytest_args)
    if collected.returncode != 0 or not ids:
        print(collected.stdout + collected.stderr, flush=True)
        return collected.returncode or 5
    modules = order(group(ids), read_weights(args.weights))
    print(f"parallel: {len(ids)} tests in {len(modules)} modules, {args.workers} workers",
          flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    # the summary counts a module without its junit file as failed (encroot.lab.junit)
    (args.out / PLANNED).write_text("".join(f"{m.junit_name}\n" for m in modules))
    workers = _Workers(modules, args.out)
    threads = [threading.Thread(target=workers.work, args=(n + 1,))
               for n in range(max(1, args.workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if workers.failed:
        print(f"parallel: failed: {', '.join(workers.failed)}", flush=True)
    return 1 if workers.failed else 0


if __name__ == "__main__":
    sys.exit(main())
