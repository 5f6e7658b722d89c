"""encroot encrypt/reencrypt/decrypt: bad input is one line, exit 2, before zfs runs."""

from __future__ import annotations

import pytest

from encroot.cli import main


@pytest.mark.parametrize(("args", "message"), [
    (["decrypt", "tank/data"], "--allow-plaintext"),
    (["encrypt", "tank"], "pool's root dataset"),
    (["encrypt", "-o", "keyformat=base64", "tank/data"], "use hex, raw or passphrase"),
    (["encrypt", "-o", "compression=lz4", "tank/data"], "use keyformat=F"),
    (["encrypt", "-o", "pbkdf2iters=many", "tank/data"], "whole number"),
    (["encrypt", "--inherit", "-o", "keyformat=hex", "tank/data"], "--inherit"),
    (["reencrypt", "--keep-old", "tank/data/old", "tank/data"], "must be outside"),
    (["encrypt", "tank/../x"], "dataset name"),
    (["encrypt", "-o", "keyformat=raw", "--key-file", "/dev/null", "tank/data"],
     "a raw key is exactly 32 bytes"),
])
def test_bad_input_is_one_line_exit_2(args: list[str], message: str,
                                      capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCROOT_ZFS", "/nonexistent/zfs")  # nothing may reach zfs
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_decrypt_takes_no_key_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["decrypt", "--allow-plaintext", "--key-file", "k", "tank/data"])
    assert caught.value.code == 2
    assert "unrecognized arguments: --key-file" in capsys.readouterr().err
