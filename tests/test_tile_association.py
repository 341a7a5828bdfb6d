"""Detections find their objects through the per-tile store as a search of the whole sky does."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogs.hats_tiles import Tiles, histogram
from catalogs.healpix import healpix_29
from catalogs.object_tiles import NO_TILE, object_tile_path, read_object_tile
from catalogs.schema import HEALPIX_COLUMN, REJECT_REASON, DetectionRejectReason
from udfs.kernels.association import assign_nearest
from udfs.kernels.tile_association import assign_stored_objects_and_tiles

RADIUS_ARCSEC = 1.5


def write_store(base, tiles, objectid, ra, dec):
    """The layout the ingest job writes with Spark: each object in its tile and its margins."""
    hp = healpix_29(ra, dec)
    own = tiles.tile_index(hp)
    rows, other = tiles.margin_tile_indices(hp, RADIUS_ARCSEC)
    tile = np.concatenate([own, other])
    index = np.concatenate([np.arange(ra.size), rows])
    for t in np.unique(tile):
        pick = index[tile == t]
        folder = object_tile_path(str(base), int(t))
        (base / folder.rsplit("/", 1)[1]).mkdir()
        table = pa.table(
            {
                "objectid": objectid[pick],
                "object_ra": ra[pick],
                "object_dec": dec[pick],
                "out_tile": objectid[pick] % 7,
            }
        )
        pq.write_table(table, f"{folder}/part-0.parquet")


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    rng = np.random.default_rng(3)
    # A dense 1-degree patch, and a few lone objects outside the pixels the tiles cover.
    n = 20_000
    ra = np.concatenate([rng.uniform(10, 11, n), [12.5, 13.5]])
    dec = np.concatenate([rng.uniform(-0.5, 0.5, n), [0.2, -0.3]])
    objectid = rng.permutation(10 * ra.size)[: ra.size].astype(np.int64)
    tiles = Tiles.from_counts(histogram(healpix_29(ra[:n], dec[:n]), 9), 9, 1_500)
    assert len(tiles) >= 10
    assert (tiles.tile_index(healpix_29(ra[n:], dec[n:])) == NO_TILE).all()
    base = tmp_path_factory.mktemp("store") / "objects"
    base.mkdir()
    write_store(base, tiles, objectid, ra, dec)
    return tiles, str(base), objectid, ra, dec


def test_store_assignment_equals_a_search_of_every_object(sky):
    tiles, base, objectid, ra, dec = sky
    rng = np.random.default_rng(4)
    # Detections scattered around objects (many cross tile edges) and loose ones anywhere.
    pick = rng.integers(0, ra.size, 60_000)
    pick[:20] = ra.size - 1  # the lone objects outside every tile
    pick[20:40] = ra.size - 2
    scatter = rng.normal(0, 0.6 / 3600, (2, pick.size))
    det_ra = np.concatenate([ra[pick] + scatter[0], rng.uniform(9.9, 13.6, 5_000)])
    det_dec = np.concatenate([dec[pick] + scatter[1], rng.uniform(-0.6, 0.6, 5_000)])
    reason = pa.array([None] * 64_000 + [DetectionRejectReason.FLAGGED] * 1_000, pa.string())
    dets = pa.table(
        {
            "objectid": pa.nulls(det_ra.size, pa.int64()),
            "ra": det_ra,
            "dec": det_dec,
            HEALPIX_COLUMN: healpix_29(det_ra, det_dec),
            REJECT_REASON: reason,
        }
    )
    out, out_tile = assign_stored_objects_and_tiles(dets, base, tiles, RADIUS_ARCSEC)

    index, _ = assign_nearest(ra, dec, det_ra, det_dec, RADIUS_ARCSEC)
    expected = np.where(index >= 0, objectid[index], -1)
    kept = np.arange(det_ra.size) < 64_000
    got = out.column("objectid").to_numpy(zero_copy_only=False)
    found = ~np.isnan(got)
    np.testing.assert_array_equal(found, kept & (expected >= 0))
    np.testing.assert_array_equal(got[found].astype(np.int64), expected[found])
    assert found.sum() > 50_000 and (kept & (expected < 0)).sum() > 1_000
    # Each found detection carries its object's output tile; rejects carry none.
    np.testing.assert_array_equal(out_tile[found], expected[found] % 7)
    assert (out_tile[~found] == -1).all()
    # The lone objects lie in no tile; detections around them still find them.
    lone = (expected[:20] == objectid[-1]).sum() + (expected[20:40] == objectid[-2]).sum()
    assert lone >= 30
    reasons = out.column(REJECT_REASON).to_pylist()
    assert reasons[64_000:] == [DetectionRejectReason.FLAGGED] * 1_000
    lost = [r for r, k, f in zip(reasons, kept, found, strict=True) if k and not f]
    assert set(lost) == {DetectionRejectReason.NO_OBJECT}
    assert sum(r is None for r in reasons) == found.sum()


def test_a_tile_without_objects_reads_empty(tmp_path):
    ids, ra, dec, _ = read_object_tile(str(tmp_path), NO_TILE)
    assert ids.size == ra.size == dec.size == 0
