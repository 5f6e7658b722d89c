"""The lab: real OpenZFS in a QEMU guest, for tests, benchmarks and safe trials.

``build`` makes (once, then cached) a small Debian guest with OpenZFS from
Debian's packages; ``run`` boots a fresh guest and runs a host script in it
as root with this checkout's encroot on PATH; ``test`` runs the project's
ZFS tests there; ``pair`` boots two guests linked only to each other, one
script each (``encroot.lab.pair``).  See ``docs/lab.md``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from .image import Image, build_image, build_images, cache_root, find_image
from .pair import GuestOutcome, PairGuest, PairResult, run_pair
from .recipes import DEFAULT_VERSION, RECIPES, recipe_for
from .vm import GuestConfig, JobResult, run_job

__all__ = [
    "DEFAULT_VERSION",
    "RECIPES",
    "GuestConfig",
    "Image",
    "JobResult",
    "PairResult",
    "build",
    "build_all",
    "cache_root",
    "find_image",
    "pair",
    "run",
    "shell",
    "test",
]


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def build(version: str | None = None, *, force: bool = False,
          say: Callable[[str], None] = _say) -> Image:
    """The guest image for ``version``, built now unless cached."""
    return build_image(recipe_for(version), say=say, force=force)


def build_all(versions: Sequence[str | None], *, force: bool = False,
              say: Callable[[str], None] = _say) -> list[Image]:
    """The guest images of ``versions``, in order; the missing ones built side by side.

    Raises:
        InputError: an unknown version (before anything is built).
        LabError: a build failed (see :func:`encroot.lab.image.build_images`).
    """
    recipes = [recipe_for(v) for v in versions]
    return build_images(recipes, say=say, force=force)


def run(script: Path, args: Sequence[str] = (), *, version: str | None = None,
        out_dir: Path | None = None, config: GuestConfig | None = None,
        say: Callable[[str], None] = _say) -> JobResult:
    """Run ``script`` with bash as root in a fresh guest; its exit status is the result's."""
    image = build(version, say=say)
    say(f"lab: booting a guest with OpenZFS {image.zfs_package_version} "
        f"(kernel {image.kernel})")
    result = run_job(image, script, args, out_dir=out_dir, config=config)
    say(f"lab: {result.zfs_version.splitlines()[0] if result.zfs_version else 'zfs ?'}; "
        f"script exited with status {result.returncode} after {result.seconds:.0f} s")
    return result


def pair(script_a: Path, script_b: Path | None = None, *, version_a: str | None = None,
         version_b: str | None = None, out_dir: Path | None = None,
         config: GuestConfig | None = None, grace: float = 60.0,
         say: Callable[[str], None] = _say) -> PairResult:
    """Run ``script_a`` in guest a and ``script_b`` (default: the same) in guest b, linked.

    Each guest boots from its own version's image; ``$OUT`` files go to
    ``out_dir/a`` and ``out_dir/b``.  See :func:`encroot.lab.pair.run_pair`.
    """
    image_a, image_b = build_all([version_a, version_b], say=say)
    result = run_pair(
        PairGuest(image_a, script_a, out_dir / "a" if out_dir else None),
        PairGuest(image_b, script_b or script_a, out_dir / "b" if out_dir else None),
        config=config, grace=grace, say=say)
    say(f"lab pair: {'both scripts succeeded' if result.ok else 'FAILED'} "
        f"(a: {_outcome(result.a)}; b: {_outcome(result.b)})")
    return result


def _outcome(outcome: GuestOutcome) -> str:
    if outcome.error is not None:
        return "no status, " + outcome.error.splitlines()[0]
    return f"status {outcome.returncode}, {outcome.zfs_version.splitlines()[0]}"


WEIGHTS = "tests/zfs/module-seconds.txt"  # seconds per test of each module
# The tests run from a copy on the guest's disk, as encroot does (guest/job-init.sh): from
# the read-only 9p share every pytest start paid for remote stats and compiled the test
# modules anew. Collecting one module took 5.3 s from the share and 2.6 s from the copy,
# and each worker starts pytest once per module. Test ids stay relative to the copy's
# pyproject.toml, so they read as before.
LOCAL_TESTS = ("set -eo pipefail\n"
               "mkdir -p /opt/encroot-checkout\n"
               "tar -C /lab/src --exclude=__pycache__ -cf - pyproject.toml tests"
               " | tar -C /opt/encroot-checkout -xf -\n"
               "cd /opt/encroot-checkout\n")


def test(pytest_args: Sequence[str] = (), *, version: str | None = None,
         out_dir: Path | None = None, config: GuestConfig | None = None, workers: int = 1,
         say: Callable[[str], None] = _say) -> JobResult:
    """Run the project's ZFS tests (``-m zfs``) inside a fresh guest.

    With ``workers`` above one, that many pytest processes share the guest, a
    test module at a time each (``encroot.lab.parallel``), and each module
    writes its own ``junit-MODULE.xml``. The tests run from a copy of the
    checkout's ``tests`` on the guest's disk (``LOCAL_TESTS``).
    """
    if workers > 1:
        script = (LOCAL_TESTS +
                  f"exec python3 -m encroot.lab.parallel --workers {workers} --out \"$OUT\" "
                  f"--weights {WEIGHTS} -- -m zfs \"$@\"\n")
    else:
        script = (LOCAL_TESTS +
                  "exec python3 -m pytest -p no:cacheprovider -m zfs "
                  '--junitxml="$OUT/junit.xml" "$@"\n')
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as handle:
        handle.write(script)
        path = Path(handle.name)
    try:
        args = list(pytest_args) or ["tests/zfs"]
        return run(path, args, version=version, out_dir=out_dir, config=config, say=say)
    finally:
        path.unlink()


def shell(*, version: str | None = None, say: Callable[[str], None] = _say) -> JobResult:
    """An interactive root shell in a fresh guest on this terminal."""
    image = build(version, say=say)
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as handle:
        handle.write("true\n")
        path = Path(handle.name)
    try:
        return run_job(image, path, interactive=True)
    finally:
        path.unlink()
