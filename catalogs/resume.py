"""The resume journal: which catalog tiles a classify run has finished, with their checksums.

A run writes its catalog into a staging folder (``catalogs.parquet_output.staging_path``). Before
the first tile file is written, the driver records the run (its fingerprint, processing time and
tile plan) in ``STAGING/_varsky_resume/run.json``; each task then records every tile file it
closes, with the file's sha256, in ``tiles/``, always after the file itself. A run given
``--resume`` whose fingerprint matches keeps every tile whose file still has its recorded
checksum and computes only the others. The journal is removed before the staging folder is
renamed into place, so a finished catalog never holds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from catalogs.hats_paths import DATASET_DIR, partition_relative_path
from catalogs.hats_tiles import Tiles
from catalogs.provenance import file_sha256

JOURNAL_DIR = "_varsky_resume"
RUN_FILE = "run.json"
TILES_DIR = "tiles"
#: The tile plan's arrays in ``run.json``: the fields of :class:`catalogs.hats_tiles.Tiles`.
_PLAN_KEYS = ("orders", "pixels", "row_counts")


def run_fingerprint(arguments: dict, inputs: list[tuple[str, int, int]], model_sha256: str) -> str:
    """sha256 over what decides the catalog's bytes: arguments, input files, model.

    ``inputs`` are (path, size in bytes, mtime in ns) of every input file: a file that changed
    since the dead run changes the fingerprint, and nothing is kept.
    """
    blob = json.dumps(
        {"arguments": arguments, "inputs": sorted(inputs), "model_sha256": model_sha256},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _record_name(record: dict) -> str:
    return f"Norder={record['order']}_Npix={record['pixel']}.json"


def _tile_file(catalog_dir: str, tile: dict) -> Path:
    """The data file of a tile record (or of a row of ``write_tile_files``)."""
    return Path(catalog_dir) / DATASET_DIR / partition_relative_path(tile["order"], tile["pixel"])


def record_tile(journal: str, catalog_dir: str, row: dict) -> None:
    """Record one closed tile file (a row of ``write_tile_files``) with its sha256; in tasks."""
    record = {
        "order": int(row["order"]),
        "pixel": int(row["pixel"]),
        "nrows": int(row["nrows"]),
        "skymap_pixels": [int(p) for p in row["skymap_pixels"]],
        "skymap_counts": [int(c) for c in row["skymap_counts"]],
        "sha256": file_sha256(_tile_file(catalog_dir, row)),
    }
    tiles_dir = Path(journal) / TILES_DIR
    tiles_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(tiles_dir / _record_name(record), json.dumps(record))


@dataclass(frozen=True)
class ResumeState:
    """What a matching journal holds: the dead run's processing time, tile plan and kept tiles."""

    processing_time: datetime
    tiles: Tiles
    kept: list[dict]

    @property
    def kept_indices(self) -> np.ndarray:
        """Tile indices (into ``tiles``) of the kept tiles."""
        plan = zip(self.tiles.orders.tolist(), self.tiles.pixels.tolist(), strict=True)
        index = {tile: i for i, tile in enumerate(plan)}
        return np.array(sorted(index[(r["order"], r["pixel"])] for r in self.kept), np.int64)

    def kept_files(self, catalog_dir: str) -> list[str]:
        """Paths of the kept tiles' data files."""
        return [str(_tile_file(catalog_dir, r)) for r in self.kept]

    @property
    def kept_rows(self) -> int:
        """Rows in the kept tiles."""
        return sum(r["nrows"] for r in self.kept)


def start_journal(staging: str, fingerprint: str, when: datetime, tiles: Tiles) -> str:
    """Record the run before its tiles are written; return the journal folder (absolute)."""
    journal = Path(staging).resolve() / JOURNAL_DIR
    journal.mkdir(parents=True, exist_ok=True)
    run = {
        "fingerprint": fingerprint,
        "processing_time_utc": when.isoformat(),
        "tiles": {key: getattr(tiles, key).tolist() for key in _PLAN_KEYS},
    }
    _write_atomically(journal / RUN_FILE, json.dumps(run))
    return str(journal)


def read_journal(staging: str, catalog_dir: str, fingerprint: str) -> ResumeState | None:
    """The state to resume from, or None when there is no journal or it is another run's.

    Tiles whose file is missing or differs from its recorded sha256 are not kept.
    """
    journal = Path(staging) / JOURNAL_DIR
    try:
        run = json.loads((journal / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    if run.get("fingerprint") != fingerprint:
        return None
    plan = run["tiles"]
    tiles = Tiles(*(np.array(plan[key], np.int64) for key in _PLAN_KEYS))
    planned = set(zip(plan["orders"], plan["pixels"], strict=True))
    kept = []
    for path in sorted((journal / TILES_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        data = _tile_file(catalog_dir, record)
        if (record["order"], record["pixel"]) in planned and data.is_file():
            if file_sha256(data) == record["sha256"]:
                kept.append(record)
    return ResumeState(datetime.fromisoformat(run["processing_time_utc"]), tiles, kept)


def clear_for_resume(staging: str, catalog_dir: str, state: ResumeState | None) -> None:
    """Empty ``staging`` but for the journal and the kept tiles' files (all of it if no state)."""
    root = Path(staging)
    if state is None:
        if root.exists():
            shutil.rmtree(root)
        return
    keep = {_tile_file(catalog_dir, r) for r in state.kept}
    journal = root / JOURNAL_DIR
    kept_records = {_record_name(r) for r in state.kept}
    for path in sorted(root.rglob("*"), reverse=True):  # files before their folders
        if path == journal / RUN_FILE or path in keep:
            continue
        if path.parent == journal / TILES_DIR and path.name in kept_records:
            continue
        if path.is_dir():
            if not any(path.iterdir()):
                path.rmdir()
        else:
            path.unlink()


def finish_journal(staging: str) -> None:
    """Remove the journal: the catalog is complete."""
    shutil.rmtree(Path(staging) / JOURNAL_DIR, ignore_errors=True)
