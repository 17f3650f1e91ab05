"""pytest fixtures for real peers: ``pytest_plugins = ["dicomlab.testing.fixtures"]``.

A peer that is not installed skips the test on a developer machine and fails
it under ``CI=true``: interoperability is never silently untested in CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomlab.peers import (
    DcmQRSCP,
    Orthanc,
    PeerMissing,
    StoreSCP,
    require_binary,
    require_file,
)

__all__ = ["dcmqrscp", "need_peer", "orthanc", "storescp"]


def need_peer(binary: str, package: str | None = None) -> str:
    """Path of ``binary`` (a program's name, or with ``package`` a file's path: a plugin);
    skip the test (fail it under CI=true) when it is missing."""
    try:
        return require_binary(binary) if package is None else require_file(binary, package)
    except PeerMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and a real peer is missing: {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[StoreSCP]:
    """A running dcmtk storescp on a free loopback port."""
    need_peer("storescp")
    with StoreSCP(tmp_path / "storescp") as scp:
        yield scp


@pytest.fixture
def dcmqrscp(tmp_path: Path) -> Iterator[DcmQRSCP]:
    """A running dcmtk dcmqrscp with an empty database."""
    need_peer("dcmqrscp")
    need_peer("dcmqridx")
    with DcmQRSCP(tmp_path / "dcmqrscp") as qr:
        yield qr


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """A running Orthanc with its own config (accepts any calling AE)."""
    need_peer("Orthanc")
    with Orthanc(tmp_path / "orthanc") as o:
        yield o
