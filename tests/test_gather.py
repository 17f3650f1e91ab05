"""Gathered writes: every byte written once, in order, whatever each call takes."""

from __future__ import annotations

import os
import socket
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomlab.core import gather
from dicomlab.net import wire


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.binary(max_size=50), max_size=20),
    takes=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=50),
)
def test_partial_writes_are_continued(parts: list[bytes], takes: list[int]) -> None:
    """A writer that takes a few bytes at a time (as a socket may) still gets them all."""
    out = bytearray()
    calls = iter(takes * 1000)

    def write(buffers: list[memoryview]) -> int:
        assert len(buffers) <= gather.IOV_MAX
        joined = b"".join(buffers)
        n = min(next(calls), len(joined))
        out.extend(joined[:n])
        return n

    assert gather.write_all(write, [memoryview(p) for p in parts]) == sum(map(len, parts))
    assert bytes(out) == b"".join(parts)


def test_a_write_that_takes_nothing_raises_and_releases_its_views() -> None:
    """No endless loop; and the views it cut are released, so the buffer they show can be
    resized again at once (a socket's read-ahead buffer, in the receive path)."""
    buf = bytearray(b"x" * 100)
    view = memoryview(buf)
    parts = [view[:60], view[60:]]
    taken = iter([10, 0])
    with pytest.raises(OSError):
        gather.write_all(lambda _: next(taken), parts)
    for p in parts:
        p.release()
    view.release()
    del buf[:50]  # raises BufferError if a view lived on
    assert len(buf) == 50


def test_more_buffers_than_one_call_takes(tmp_path: os.PathLike[str]) -> None:
    parts = [memoryview(bytes([i % 256])) for i in range(3 * gather.IOV_MAX + 7)]
    path = os.path.join(tmp_path, "f")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        assert gather.write_all(lambda b: os.writev(fd, b), parts) == len(parts)
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        assert f.read() == b"".join(parts)


def test_pdus_sent_gathered_arrive_as_the_joined_pdus() -> None:
    """The PDU heads and fragment views, through a real socket's sendmsg, are the bytes of
    the joined PDUs (a peer cannot tell the two apart)."""
    data = os.urandom(300_000)
    expected = b"".join(wire.data_pdus(5, data, 16384))
    a, b = socket.socketpair()
    got = bytearray()

    def read() -> None:
        while len(got) < len(expected):
            chunk = b.recv(1 << 16)
            if not chunk:
                break
            got.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        views = [memoryview(p) for p in wire.data_pdu_parts(5, data, 16384)]
        assert gather.write_all(a.sendmsg, views) == len(expected)
    finally:
        reader.join(10)
        a.close()
        b.close()
    assert bytes(got) == expected
