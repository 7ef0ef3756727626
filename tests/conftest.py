"""Fixtures shared by the test files.

``tests`` and ``tests/workers`` are on ``sys.path`` (``pythonpath`` in
``pyproject.toml``), so test files import the helper modules (``faults``,
``cloud_servers``, ``rel_common``) by name.  The emulator fixtures of
:mod:`cloud_servers` (moto S3, Azurite, an HTTP range server) are registered here
once; a test asks for them by name.
"""

from __future__ import annotations

import pytest
from cloud_servers import azure_container, azurite, http_server, moto_s3, s3_bucket

import atlas

__all__ = ["azure_container", "azurite", "http_server", "moto_s3", "s3_bucket", "store"]


@pytest.fixture
def store(tmp_path):
    """A new writable store in a temporary directory, closed after the test."""
    s = atlas.Atlas.create(tmp_path / "s.atlas")
    yield s
    s.close()
