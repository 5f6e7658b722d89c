"""Pure parts of the lab: recipes, the host's apt mirror, the QEMU command line, job files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from encroot.errors import InputError, LabError
from encroot.lab.host import find_debian_mirror
from encroot.lab.image import Image
from encroot.lab.recipes import DEFAULT_VERSION, RECIPES, guest_sources, recipe_for
from encroot.lab.vm import GuestConfig, _prepare_job, qemu_argv, source_share


def test_recipes_cover_the_three_versions() -> None:
    assert DEFAULT_VERSION == "2.3"
    assert {v: (r.suite, r.zfs_suite) for v, r in RECIPES.items()} == {
        "2.1": ("bookworm", "bookworm"),
        "2.3": ("bookworm", "bookworm-backports"),
        "2.4": ("trixie", "trixie-backports"),
    }
    assert recipe_for(None) is RECIPES["2.3"]


def test_unknown_version_is_an_input_error() -> None:
    expected = "--zfs '2.2': the lab offers OpenZFS 2.1, 2.3, 2.4"
    with pytest.raises(InputError, match=re.escape(expected)):
        recipe_for("2.2")


def test_cache_keys_differ_per_version_and_are_stable() -> None:
    keys = {r.cache_key() for r in RECIPES.values()}
    assert len(keys) == 3
    assert RECIPES["2.3"].cache_key() == RECIPES["2.3"].cache_key()
    assert RECIPES["2.3"].cache_key().startswith("zfs-2.3-")


def test_guest_sources_keep_debootstraps_mirror() -> None:
    written = "deb http://mirror.example/debian bookworm main\n"
    assert guest_sources(written, RECIPES["2.3"]) == (
        "deb http://mirror.example/debian bookworm main contrib\n"
        "deb http://mirror.example/debian bookworm-backports main contrib\n")
    assert guest_sources(written, RECIPES["2.1"]) == (
        "deb http://mirror.example/debian bookworm main contrib\n")
    with pytest.raises(ValueError, match="no 'deb MIRROR trixie'"):
        guest_sources(written, RECIPES["2.4"])


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb\n# a comment\nURIs: http://main.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")
    assert find_debian_mirror(tmp_path) == "http://main.example/debian"


def test_mirror_from_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian buster main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib\n")
    assert find_debian_mirror(tmp_path) == "http://one.example/debian"


def test_no_mirror_found(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://x.example/ nodistro-updates main\n")
    assert find_debian_mirror(tmp_path) is None


def test_qemu_argv_uses_tcg_a_snapshot_disk_and_two_shares(tmp_path: Path) -> None:
    image = Image(tmp_path, "2.3", "2.3.2-2", "6.1.0-1-amd64", "bookworm")
    argv = qemu_argv(image, tmp_path / "job", tmp_path / "src",
                     GuestConfig(accel="tcg", cpu_model="max", kernel_args=""))
    line = " ".join(argv)
    assert argv[:5] == ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max"]
    assert f"file={tmp_path}/rootfs.img,format=raw,if=virtio,snapshot=on" in argv
    assert "mount_tag=job" in line and "mount_tag=src" in line and "readonly=on" in line
    assert line.count("-virtfs") == 2
    assert "-nic none" in line and "-no-reboot" in line
    assert "init=/usr/local/sbin/encroot-stub-init" in line
    assert "init_on_alloc=0" in argv[argv.index("-append") + 1]


def test_qemu_argv_takes_the_cpu_model_and_extra_kernel_words(tmp_path: Path) -> None:
    image = Image(tmp_path, "2.3", "2.3.2-2", "6.1.0-1-amd64", "bookworm")
    config = GuestConfig(accel="tcg", cpu_model="Westmere", kernel_args="init_on_alloc=0")
    argv = qemu_argv(image, tmp_path / "job", tmp_path / "src", config)
    assert argv[argv.index("-cpu") + 1] == "Westmere"
    assert argv[argv.index("-append") + 1].endswith(" init_on_alloc=0")


def test_job_files_follow_the_guest_contract(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("echo hi\n")
    job = tmp_path / "job"
    job.mkdir()
    _prepare_job(job, script, ["a b", "", "c"], {"X": "1"}, "src")
    assert (job / "script").read_text() == "echo hi\n"
    assert (job / "args").read_bytes() == b"a b\0\0c\0"
    assert (job / "env").read_text() == "ENCROOT_SRC_REL=src\nX=1\n"
    assert "mapfile -d '' args" in (job / "init.sh").read_text()
    assert (job / "out").is_dir()


def test_job_rejects_bad_env_and_missing_script(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="no newlines"):
        _prepare_job(tmp_path, Path(__file__), [], {"X": "a\nb"}, "src")
    with pytest.raises(LabError, match="cannot read it"):
        _prepare_job(tmp_path, tmp_path / "nope.sh", [], {}, "src")


def test_source_share_is_this_checkout() -> None:
    share, rel = source_share()
    assert (share / "pyproject.toml").is_file()
    assert (share / rel / "encroot" / "__init__.py").is_file()
