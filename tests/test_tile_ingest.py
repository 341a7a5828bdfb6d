"""Building one output tile from its blobs: the same files whatever order the shuffle gave."""

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from catalogs.hats_tiles import Tiles
from catalogs.hats_writer import tile_write_settings
from catalogs.healpix import healpix_29
from udfs.kernels.lightcurve_building import LIGHTCURVE_CATALOG_SCHEMA
from udfs.kernels.tile_association import MEMBERSHIP_SCHEMA
from udfs.kernels.tile_blobs import pack_by_tile
from udfs.kernels.tile_ingest import (
    KIND_DETECTIONS,
    KIND_MEMBERS,
    PACKED_DETECTION_SCHEMA,
    build_tile,
)


def _detections(path: str, objectid: np.ndarray, rng_seed: int) -> pa.Table:
    """Detections of ``objectid`` (one a row), every column set, read from ``path``."""
    n = objectid.size
    rng = np.random.default_rng(rng_seed)
    ra, dec = 10.0 + 1e-5 * rng.standard_normal(n), 20.0 + 1e-5 * rng.standard_normal(n)
    columns = {
        "detid": np.arange(n, dtype=np.int64) + 1_000,
        "objectid": objectid,
        "source_id": pa.nulls(n, pa.int64()),
        "catalog": np.full(n, 7, dtype=np.int64),
        "ra": ra,
        "dec": dec,
        "_healpix_29": healpix_29(ra, dec),
        "hmjd": 59_000.0 + np.arange(n) // 3,
        "band": np.zeros(n, dtype=np.int8),
        "mag": np.linspace(15, 16, n).astype(np.float32),
        "magerr": np.full(n, 0.02, dtype=np.float32),
        "flags": np.zeros(n, dtype=np.int32),
        "source_file": pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(n, dtype=np.int32)), pa.array([path])
        ),
        "source_row": np.arange(n, dtype=np.int64),
    }
    return pa.table(columns, schema=PACKED_DETECTION_SCHEMA)


def test_a_tile_is_built_the_same_whatever_order_its_blobs_come_in(tmp_path):
    tiles = Tiles(np.zeros(12, dtype=np.int64), np.arange(12))  # the sky in 12 order-0 tiles
    objectid = np.repeat(np.array([5, 9, 13], dtype=np.int64), 10)
    tile = int(tiles.tile_index(healpix_29([10.0], [20.0]))[0])
    original = _detections("/data/a_psfcat.fits", objectid, 1)
    copy = _detections("/data/copy/a_psfcat.fits", objectid, 1)  # the same file given twice
    members = pa.table(
        {
            "source_id": np.array([5, 9, 13], dtype=np.int64),
            "objectid": np.array([5, 9, 13], dtype=np.int64),
            "object_ra": np.full(3, 10.0),
            "object_dec": np.full(3, 20.0),
        },
        schema=MEMBERSHIP_SCHEMA,
    )
    here = np.full(objectid.size, tile)
    batches = [
        *pack_by_tile(members, np.full(3, tile), KIND_MEMBERS),
        *pack_by_tile(original, here, KIND_DETECTIONS, itertools.count(2 << 24)),
        *pack_by_tile(copy, here, KIND_DETECTIONS, itertools.count(9 << 24)),
    ]
    kwargs = tile_write_settings(LIGHTCURVE_CATALOG_SCHEMA)
    written = []
    for name, order in (("forward", batches), ("shuffled", batches[::-1])):
        base, rejects = tmp_path / name / "catalog", tmp_path / name / "rejects"
        result = build_tile(
            pa.Table.from_batches(order), tile, tiles, str(base), 8, kwargs, str(rejects)
        )
        assert result.column("count").to_pylist() == [objectid.size]  # the copy, all duplicates
        (dups,) = rejects.glob("dup-*.parquet")
        (catalog,) = base.rglob("Npix=*.parquet")
        written.append((pq.read_table(dups), catalog.read_bytes()))
    (dups_a, catalog_a), (dups_b, catalog_b) = written
    assert dups_a.equals(dups_b)
    assert set(dups_a.column("source_file").to_pylist()) == {"/data/copy/a_psfcat.fits"}
    assert catalog_a == catalog_b
