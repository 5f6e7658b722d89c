"""Stream header inspection, on heads of real `zfs send` streams (tests/data/streams).

The sample files were made by tests/data/make-streams.sh on OpenZFS 2.3.2 in the lab;
guids.txt lists the GUIDs ZFS reported for the same snapshots.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encroot.errors import StreamError
from encroot.stream import BEGIN_RECORD_SIZE, decode_xdr_nvlist, parse_header, peek_stream
from encroot.stream import peek as stream_module

DATA = Path(__file__).parent.parent / "data" / "streams"


def sample(name: str) -> bytes:
    return (DATA / f"{name}.zstream").read_bytes()


def zfs_guids() -> dict[str, int]:
    lines = (DATA / "guids.txt").read_text().splitlines()
    return {name: int(guid) for name, guid in (line.split("\t") for line in lines)}


def test_single_full_stream() -> None:
    info = parse_header(sample("plain-full"))
    assert (info.package, info.full, info.raw, info.encrypted) == (False, True, False, False)
    assert info.toname == "p/plain@A" and info.top == "p/plain" and info.tosnap == "A"
    assert info.toguid == zfs_guids()["p/plain@A"]
    assert info.fromguid == 0 and info.header_bytes == BEGIN_RECORD_SIZE
    assert info.byte_order == "little-endian" and info.objset_type == "filesystem"


def test_single_incremental_stream() -> None:
    info = parse_header(sample("plain-incremental"))
    assert not info.full and info.fromguid == zfs_guids()["p/plain@A"]
    assert info.toguid == zfs_guids()["p/plain@B"]


def test_raw_streams_of_encrypted_datasets() -> None:
    for name, snap in (("raw-full", "p/enc@A"), ("raw-child-full", "p/enc/child@A")):
        info = parse_header(sample(name))
        assert info.raw and info.encrypted and info.full
        assert "raw" in info.features
        assert info.toguid == zfs_guids()[snap]
    incremental = parse_header(sample("raw-incremental"))
    assert incremental.raw and not incremental.full


def test_clone_stream_has_the_clone_flag() -> None:
    info = parse_header(sample("clone-incremental"))
    assert info.clone and info.toname == "p/plainclone@C"


def test_raw_replication_package_lists_every_dataset_and_guid() -> None:
    info = parse_header(sample("raw-replication"))
    guids = zfs_guids()
    assert info.package and info.full and info.raw and info.encrypted
    assert info.tosnap == "B" and info.fromsnap is None and info.top == "p/enc"
    assert [d.name for d in info.datasets] == ["p/enc", "p/enc/child", "p/enc/child/grandchild"]
    assert [d.is_encroot for d in info.datasets] == [True, False, False]
    for dataset in info.datasets:
        assert {s.name: s.guid for s in dataset.snapshots} == {
            "A": guids[f"{dataset.name}@A"], "B": guids[f"{dataset.name}@B"]}
    assert info.datasets[2].relative_to("p/enc") == "child/grandchild"
    assert info.header_bytes > BEGIN_RECORD_SIZE


def test_incremental_replication_package() -> None:
    info = parse_header(sample("raw-replication-incremental"))
    assert info.package and not info.full and info.fromsnap == "A" and info.tosnap == "B"


def test_unencrypted_replication_package() -> None:
    info = parse_header(sample("plain-replication"))
    assert info.package and not info.raw and not info.encrypted
    assert [d.name for d in info.datasets] == ["p/plain"]


def test_json_form_has_the_report_fields() -> None:
    report = parse_header(sample("raw-replication")).to_json()
    assert report["kind"] == "replication package"
    assert report["raw"] is True and report["incremental"] is False
    assert report["datasets"][0]["snapshots"][0]["name"] == "A"


def test_big_endian_sender() -> None:
    little = sample("plain-full")[:BEGIN_RECORD_SIZE]
    fields = struct.unpack_from("<IIQQQIIQQ", little, 0)
    big = struct.pack(">IIQQQIIQQ", *fields) + little[56:]
    info = parse_header(big)
    assert info.byte_order == "big-endian"
    assert info.toguid == zfs_guids()["p/plain@A"] and info.toname == "p/plain@A"


@pytest.mark.parametrize("name", ["plain-full", "raw-replication"])
def test_every_truncation_inside_the_header_is_a_clear_error(name: str) -> None:
    data = sample(name)
    end = parse_header(data).header_bytes
    for cut in range(end):
        with pytest.raises(StreamError, match=r"truncated|empty"):
            parse_header(data[:cut])


def test_not_a_stream() -> None:
    with pytest.raises(StreamError, match="not a zfs send stream"):
        parse_header(b"\x00" * 400)
    with pytest.raises(StreamError, match="empty"):
        parse_header(b"")


@settings(max_examples=300)
@given(st.data())
def test_fuzz_bit_flips_in_real_headers(data: st.DataObject) -> None:
    original = bytearray(sample(data.draw(st.sampled_from(
        ["raw-replication", "plain-full", "raw-replication-incremental"]))))
    end = parse_header(bytes(original)).header_bytes
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, end - 1))
        original[position] ^= 1 << data.draw(st.integers(0, 7))
    try:
        parse_header(bytes(original))
    except StreamError as exc:
        assert "\n" not in str(exc)


@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(data: bytes) -> None:
    try:
        parse_header(data)
    except StreamError:
        pass


@given(st.binary(max_size=512))
def test_fuzz_xdr_decoder(data: bytes) -> None:
    try:
        decode_xdr_nvlist(b"\x01\x01\x00\x00" + data)
    except StreamError:
        pass


# -- peeking on descriptors -----------------------------------------------------------


def test_peek_regular_file_leaves_the_offset(tmp_path: Path) -> None:
    data = sample("raw-replication")
    path = tmp_path / "s"
    path.write_bytes(b"junk" + data)
    with open(path, "rb", buffering=0) as handle:
        assert handle.read(4) == b"junk"
        peeked = peek_stream(handle.fileno())
        assert peeked.method == "pread" and peeked.fd == handle.fileno()
        assert peeked.info.package and len(peeked.info.datasets) == 3
        assert handle.readall() == data


def _writer(fd: int, data: bytes, chunk: int, pause: float) -> threading.Thread:
    def write() -> None:
        try:
            for start in range(0, len(data), chunk):
                os.write(fd, data[start:start + chunk])
                time.sleep(pause)
        finally:
            os.close(fd)
    thread = threading.Thread(target=write)
    thread.start()
    return thread


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(("chunk", "pause"), [(1 << 16, 0.0), (100, 0.002)])
def test_peek_pipe_does_not_consume(chunk: int, pause: float) -> None:
    data = sample("raw-replication")
    read_end, write_end = os.pipe()
    writer = _writer(write_end, data, chunk, pause)
    try:
        peeked = peek_stream(read_end)
        assert peeked.method == "tee" and peeked.fd == read_end
        assert peeked.info.header_bytes == 1820
        assert _read_all(read_end) == data
    finally:
        writer.join()
        os.close(read_end)


def test_peek_pipe_with_a_truncated_header_then_eof() -> None:
    data = sample("raw-replication")[:1000]
    read_end, write_end = os.pipe()
    writer = _writer(write_end, data, 300, 0.001)
    try:
        with pytest.raises(StreamError, match="truncated"):
            peek_stream(read_end)
    finally:
        writer.join()
        os.close(read_end)


def test_peek_socket_relays_everything() -> None:
    data = sample("raw-replication") * 3
    left, right = socket.socketpair()
    writer = _writer(os.dup(right.fileno()), data, 4096, 0.0)
    right.close()
    try:
        peeked = peek_stream(left.fileno())
        assert peeked.method == "relay" and peeked.fd != left.fileno()
        assert _read_all(peeked.fd) == data
        assert peeked.finish() == len(data)
    finally:
        writer.join()
        left.close()


def test_header_larger_than_the_pipe_falls_back_to_relay(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_module, "_grow_pipe", lambda fd, size: 1024)
    data = sample("raw-replication")
    read_end, write_end = os.pipe()
    writer = _writer(write_end, data, 1 << 16, 0.0)
    try:
        peeked = peek_stream(read_end)
        assert peeked.method == "relay"
        assert _read_all(peeked.fd) == data
        peeked.finish()
    finally:
        writer.join()
        os.close(read_end)
