from __future__ import annotations

from pathlib import Path

import hats
import lsdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest
from hats.io.file_io import read_fits_image
from hats.io.validation import is_valid_catalog, is_valid_collection

from catalogs.hats_tiles import Tiles, histogram
from catalogs.hats_writer import (
    TILE_COLUMN,
    CatalogSpec,
    partition_relative_path,
    write_catalog_metadata,
    write_collection_properties,
)
from catalogs.healpix import healpix_29
from catalogs.schema import HEALPIX_COLUMN
from catalogs.spark_tables import spark_histogram, write_hats_spark

MAX_ROWS = 400
MARGIN_ARCSEC = 600.0
EXTRA = {"varsky_schema_version": "7"}
CATALOG_FILES = {
    "hats.properties",
    "properties",
    "partition_info.csv",
    "skymap.fits",
    "point_map.fits",
    "dataset/_common_metadata",
    "dataset/_metadata",
}


def make_table(n_uniform=12000, n_wrap=4000, n_patch=4000, seed=11) -> pa.Table:
    """Uniform sky, a dense patch across RA=0 and another at (150, 30)."""
    rng = np.random.default_rng(seed)
    ra = np.concatenate(
        [
            rng.uniform(0, 360, n_uniform),
            rng.uniform(-1.5, 1.5, n_wrap) % 360,
            rng.uniform(148.5, 151.5, n_patch),
        ]
    )
    dec = np.concatenate(
        [
            np.degrees(np.arcsin(rng.uniform(-1, 1, n_uniform))),
            rng.uniform(-1.5, 1.5, n_wrap),
            rng.uniform(28.5, 31.5, n_patch),
        ]
    )
    n = ra.size
    order = rng.permutation(n)
    lengths = rng.integers(0, 5, n)
    return pa.table(
        {
            "id": np.arange(n, dtype=np.int64),
            "ra": ra[order],
            "dec": dec[order],
            "mag": rng.normal(18, 1, n).astype(np.float32),
            "name": [f"obj{i}" for i in range(n)],
            "hmjd": pa.array(
                [list(np.arange(k) + 58000.5) for k in lengths], pa.list_(pa.float64())
            ),
        }
    )


def relative_files(base: Path) -> set[str]:
    return {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()}


def data_files(tiles_with_rows) -> set[str]:
    return {f"dataset/{partition_relative_path(o, p)}" for o, p, _ in tiles_with_rows}


def angular_distance_arcsec(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    hav = (
        np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    )
    return np.degrees(2 * np.arcsin(np.sqrt(hav))) * 3600.0


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return make_table()


@pytest.fixture(scope="module")
def table_hp29(table) -> pa.Table:
    hp29 = healpix_29(table["ra"].to_numpy(), table["dec"].to_numpy())
    return table.add_column(0, HEALPIX_COLUMN, pa.array(hp29))


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory, spark, table, table_hp29):
    """The table written by Spark tasks, with its margin; the tiles cut from a numpy histogram."""
    root = tmp_path_factory.mktemp("hats")
    tiles = Tiles.from_counts(histogram(table_hp29[HEALPIX_COLUMN].to_numpy(), 8), 8, MAX_ROWS)
    df = spark.createDataFrame(table_hp29).repartition(3)
    spark_tiles = Tiles.from_counts(spark_histogram(df, 8), 8, MAX_ROWS)
    spec = CatalogSpec("cat", max_rows=MAX_ROWS, extra_properties=EXTRA)
    written = write_hats_spark(df, root / "spark" / "cat", spec, spark_tiles)
    # The margin's own spec: the catalog's extra properties are not the margin's here.
    margin = CatalogSpec("cat_margin", margin_arcsec=MARGIN_ARCSEC, primary_catalog="../cat")
    spark_margins = write_hats_spark(df, root / "spark" / "cat_margin", margin, spark_tiles)
    write_collection_properties(root / "spark", "cat_collection", "cat", ["cat_margin"])
    return {
        "tiles": tiles,
        "spark_tiles": spark_tiles,
        "spark_written": written,
        "spark": (root / "spark", spark_margins),
    }


# One writer: the in-memory twin went (lsdb writes the test inputs that needed it).
WAYS = ["spark"]


def test_spark_histogram_gives_the_same_tiles(catalogs):
    assert catalogs["spark_tiles"] == catalogs["tiles"]
    tiles = catalogs["tiles"]
    expected = list(zip(*tiles.to_arrays(), tiles.row_counts.tolist(), strict=True))
    assert catalogs["spark_written"] == expected
    assert len(tiles) > 40 and tiles.max_order >= 5


@pytest.mark.parametrize("way", WAYS)
def test_layout_is_exactly_hats(catalogs, way):
    collection, margins = catalogs[way]
    tiles = catalogs["tiles"]
    written = list(zip(*tiles.to_arrays(), tiles.row_counts.tolist(), strict=True))
    assert relative_files(collection / "cat") == CATALOG_FILES | data_files(written)
    assert relative_files(collection / "cat_margin") == (
        CATALOG_FILES - {"skymap.fits", "point_map.fits"}
    ) | data_files(margins)
    assert relative_files(collection) == (
        {"collection.properties"}
        | {f"cat/{f}" for f in relative_files(collection / "cat")}
        | {f"cat_margin/{f}" for f in relative_files(collection / "cat_margin")}
    )
    info = pd.read_csv(collection / "cat" / "partition_info.csv")
    assert list(info.columns) == ["Norder", "Npix"]
    assert sorted(zip(info.Norder, info.Npix, strict=True)) == sorted(
        zip(*tiles.to_arrays(), strict=True)
    )


@pytest.mark.parametrize("way", WAYS)
def test_hats_validation_passes(catalogs, way):
    collection = catalogs[way][0]
    assert is_valid_catalog(collection / "cat", strict=True)
    assert is_valid_catalog(collection / "cat_margin", strict=True)
    assert is_valid_collection(collection, strict=True)
    catalog = hats.read_hats(collection / "cat")
    assert catalog.catalog_info.total_rows == 20000
    assert len(catalog.get_healpix_pixels()) == len(catalogs["tiles"])


@pytest.mark.parametrize("way", WAYS)
def test_properties_and_skymap(catalogs, way):
    base = catalogs[way][0] / "cat"
    properties = hats.read_hats(base).catalog_info
    assert properties.catalog_name == "cat"
    assert properties.catalog_type == "object"
    assert (properties.ra_column, properties.dec_column) == ("ra", "dec")
    assert properties.total_rows == 20000
    assert properties.hats_max_rows == MAX_ROWS
    assert properties.healpix_column == HEALPIX_COLUMN
    extra = properties.extra_dict()
    assert extra["varsky_schema_version"] == "7"
    assert int(extra["hats_order"]) == catalogs["tiles"].max_order
    assert extra["hats_builder"].startswith("varsky 0.1.0")
    assert extra["hats_creation_date"] and properties.hats_estsize > 0
    assert (base / "hats.properties").read_text().endswith((base / "properties").read_text()[14:])
    skymap = read_fits_image(base / "skymap.fits")
    assert skymap.size == 12 * 4**properties.skymap_order and skymap.sum() == 20000
    margin = hats.read_hats(catalogs[way][0] / "cat_margin").catalog_info
    assert margin.catalog_type == "margin" and margin.margin_threshold == MARGIN_ARCSEC
    assert margin.primary_catalog == "../cat"


@pytest.mark.parametrize("way", WAYS)
def test_files_sorted_one_row_group_same_schema(catalogs, way):
    base = catalogs[way][0] / "cat"
    tiles = catalogs["tiles"]
    common = pq.read_schema(base / "dataset" / "_common_metadata")
    assert TILE_COLUMN not in common.names
    assert common.field(HEALPIX_COLUMN).type == pa.int64()
    for order, pixel in zip(*tiles.to_arrays(), strict=True):
        path = base / "dataset" / partition_relative_path(order, pixel)
        parquet = pq.ParquetFile(path)
        assert parquet.schema_arrow.equals(common)
        assert parquet.metadata.num_row_groups == 1
        hp29 = parquet.read(columns=[HEALPIX_COLUMN])[HEALPIX_COLUMN].to_numpy()
        assert np.all(np.diff(hp29) >= 0)
        assert np.all(hp29 >> (2 * (29 - order)) == pixel)
    metadata = pq.read_metadata(base / "dataset" / "_metadata")
    assert metadata.num_row_groups == len(tiles)
    assert metadata.num_rows == 20000
    paths = [metadata.row_group(i).column(0).file_path for i in range(metadata.num_row_groups)]
    assert paths == [partition_relative_path(o, p) for o, p in zip(*tiles.to_arrays(), strict=True)]


@pytest.mark.parametrize("way", WAYS)
def test_lsdb_reads_every_row_once(catalogs, way, table):
    catalog = lsdb.open_catalog(catalogs[way][0])
    assert catalog.margin is not None
    frame = catalog.compute().reset_index().sort_values("id")
    expected = table.to_pandas()
    assert frame["id"].tolist() == expected["id"].tolist()
    for column in ("ra", "dec", "mag", "name"):
        np.testing.assert_array_equal(frame[column].to_numpy(), expected[column].to_numpy())
    assert [list(x) for x in frame["hmjd"]] == [list(x) for x in expected["hmjd"]]
    np.testing.assert_array_equal(
        frame[HEALPIX_COLUMN].to_numpy(), healpix_29(expected["ra"], expected["dec"])
    )


CONES = [
    (0.2, -0.3, 2400.0),  # across RA=0, in the dense patch: many small tiles
    (150.0, 30.0, 1500.0),  # the second dense patch
    (180.0, -41.8, 20000.0),  # sparse sky at a corner of base pixels, large tiles
]


@pytest.mark.parametrize("way", WAYS)
def test_cone_search_equals_brute_force(catalogs, way, table):
    catalog = lsdb.open_catalog(catalogs[way][0] / "cat")
    tiles = catalogs["tiles"]
    ra, dec = table["ra"].to_numpy(), table["dec"].to_numpy()
    for cone_ra, cone_dec, radius_arcsec in CONES:
        found = catalog.cone_search(cone_ra, cone_dec, radius_arcsec).compute()
        inside = angular_distance_arcsec(cone_ra, cone_dec, ra, dec) <= radius_arcsec
        assert sorted(found["id"]) == np.flatnonzero(inside).tolist()
        assert len(set(tiles.tile_index(healpix_29(ra[inside], dec[inside])))) >= 2


@pytest.mark.parametrize("way", WAYS)
def test_pandas_pyarrow_and_spark_read_the_same_rows(catalogs, way, spark):
    dataset = catalogs[way][0] / "cat" / "dataset"
    assert len(pd.read_parquet(dataset)) == 20000
    assert pds.dataset(dataset, format="parquet").count_rows() == 20000
    assert pds.parquet_dataset(dataset / "_metadata").count_rows() == 20000
    assert spark.read.parquet(str(dataset)).count() == 20000


def test_margin_holds_every_row_within_the_margin(catalogs, table_hp29):
    collection, margins = catalogs["spark"]
    tiles = catalogs["tiles"]
    ra, dec = table_hp29["ra"].to_numpy(), table_hp29["dec"].to_numpy()
    own = tiles.tile_index(table_hp29[HEALPIX_COLUMN].to_numpy())
    from tests.test_hats_tiles import offset

    expected = set()
    for angle in np.linspace(0, 2 * np.pi, 24, endpoint=False):
        other = tiles.tile_index(healpix_29(*offset(ra, dec, 0.99 * MARGIN_ARCSEC, angle)))
        near = np.flatnonzero((other >= 0) & (other != own))
        expected |= set(zip(near.tolist(), other[near].tolist(), strict=True))
    got = set()
    for order, pixel, n_rows in margins:
        ids = pq.read_table(
            collection / "cat_margin" / "dataset" / partition_relative_path(order, pixel),
            columns=["id"],
        )["id"].to_numpy()
        assert ids.size == n_rows
        tile = int(tiles.tile_index([pixel << (2 * (29 - order))])[0])
        assert np.all(own[ids] != tile)
        got |= {(int(i), tile) for i in ids}
    assert expected <= got
    loaded = lsdb.open_catalog(collection).margin.compute()
    assert len(loaded) == sum(n for _, _, n in margins)


def test_path_names_are_hats_own():
    from hats.io import paths
    from hats.pixel_math import HealpixPixel

    import catalogs.hats_paths as ours

    assert ours.DATASET_DIR == paths.DATASET_DIR
    assert (ours.PARTITION_ORDER, ours.PARTITION_DIR, ours.PARTITION_PIXEL) == (
        paths.PARTITION_ORDER,
        paths.PARTITION_DIR,
        paths.PARTITION_PIXEL,
    )
    assert (ours.METADATA_FILE, ours.COMMON_METADATA_FILE, ours.PARTITION_INFO_FILE) == (
        paths.PARQUET_METADATA_FILENAME,
        paths.PARQUET_COMMON_METADATA_FILENAME,
        paths.PARTITION_INFO_FILENAME,
    )
    assert ours.tile_of_path("x/dataset/Norder=7/Dir=10000/Npix=12345.parquet") == (7, 12345)
    assert ours.tile_of_path("x/part-00000.parquet") is None
    for order, pixel in [(0, 5), (7, 9999), (7, 10000), (12, 123456789)]:
        expected = paths.pixel_catalog_file("/base", HealpixPixel(order, pixel))
        assert f"/base/dataset/{partition_relative_path(order, pixel)}" == str(expected)


def test_refuses_to_write_into_a_non_empty_directory(tmp_path, catalogs, spark, table_hp29):
    (tmp_path / "stale.txt").write_text("x")
    df = spark.createDataFrame(table_hp29.slice(0, 10))
    with pytest.raises(FileExistsError, match=r"HATS output .* is not empty"):
        write_hats_spark(df, tmp_path, CatalogSpec("cat"), catalogs["tiles"])


def test_metadata_checks_row_counts(tmp_path, table_hp29):
    path = tmp_path / "dataset" / partition_relative_path(0, 1)
    path.parent.mkdir(parents=True)
    pq.write_table(table_hp29.slice(0, 10), path)
    with pytest.raises(ValueError, match=r"Npix=1.parquet holds 10 rows, 11 expected"):
        write_catalog_metadata(tmp_path, CatalogSpec("cat", max_rows=100), [(0, 1, 11)])
    with pytest.raises(
        ValueError, match=r"lists tiles without rows \(order, pixel\): \[\(0, 2\)\]"
    ):
        write_catalog_metadata(tmp_path, CatalogSpec("cat", max_rows=100), [(0, 1, 10), (0, 2, 0)])


def test_refuses_rows_without_healpix(tmp_path, catalogs, spark, table_hp29):
    hp29 = table_hp29[HEALPIX_COLUMN].to_pylist()[:20]
    hp29[3] = None
    rows = table_hp29.slice(0, 20).set_column(0, HEALPIX_COLUMN, pa.array(hp29, pa.int64()))
    df = spark.createDataFrame(rows).coalesce(1)
    with pytest.raises(Exception, match="_healpix_29 has 1 nulls; every row needs one"):
        write_hats_spark(df, tmp_path / "cat", CatalogSpec("cat"), catalogs["tiles"])
