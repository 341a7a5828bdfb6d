"""Provenance recorded with every output row: software version and model checksum."""

from __future__ import annotations

import hashlib
from pathlib import Path

VARSKY_VERSION = "0.1.0"


def file_sha256(path: str | Path) -> str:
    """Return the hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
