"""The classify job's HATS collection on the real DR5 sample: hats, lsdb and four other readers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import lsdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest
from hats.io.validation import is_valid_catalog, is_valid_collection

from catalogs.input_files import hats_partition_files
from catalogs.schema import CLASSIFICATION_SCHEMA_VERSION
from jobs.classify import ClassifyConfig, run_classify

NAME = "varsky_classification"
MAX_ROWS = 250
MARGIN_ARCSEC = 30.0


def _run(spark, sample_file, model_dir, out: Path):
    config = ClassifyConfig(
        inputs=(str(sample_file),), output=str(out), rejects=str(out) + "_rejects",
        model_dir=str(model_dir), max_rows_per_pixel=MAX_ROWS, margin_arcsec=MARGIN_ARCSEC,
    )  # fmt: skip
    return run_classify(spark, config, log=lambda *_: None)


@pytest.fixture(scope="module")
def collections(spark, sample_file, model_dir, tmp_path_factory):
    """Two runs of the same job with a fixed processing time (SOURCE_DATE_EPOCH)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SOURCE_DATE_EPOCH", "1790000000")
    root = tmp_path_factory.mktemp("classification")
    try:
        runs = [(root / name, _run(spark, sample_file, model_dir, root / name)) for name in "ab"]
    finally:
        mp.undo()
    return runs


@pytest.fixture(scope="module")
def table(collections) -> pa.Table:
    out = collections[0][0]
    return pa.concat_tables(pq.read_table(f) for f in hats_partition_files(str(out / NAME)))


def _separation_arcsec(ra0, dec0, ra, dec):
    ra0, dec0, ra, dec = map(np.radians, (ra0, dec0, ra, dec))
    cos = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
    return np.degrees(np.arccos(np.clip(cos, -1, 1))) * 3600


def test_layout_and_hats_validation(collections):
    out, summary = collections[0]
    assert is_valid_catalog(out / NAME, strict=True)
    assert is_valid_catalog(out / f"{NAME}_30arcs", strict=True)
    assert is_valid_collection(out, strict=True)
    for name in ("hats.properties", "partition_info.csv", "skymap.fits", "point_map.fits",
                 "dataset/_metadata", "dataset/_common_metadata"):  # fmt: skip
        assert (out / NAME / name).is_file(), name
    files = list((out / NAME / "dataset").rglob("Npix=*.parquet"))
    assert len(files) == len(summary.tiles) > 3  # adaptive: the quadrant is cut into tiles
    for f in files:
        order = int(f.parent.parent.name.split("=")[1])
        pixel = int(f.stem.split("=")[1])
        assert f.parent.name == f"Dir={(pixel // 10000) * 10000}" and order >= 0
        rows = pq.read_table(f)
        assert rows.num_rows <= MAX_ROWS
        hp = rows.column("_healpix_29").to_numpy()
        assert np.all(np.diff(hp) >= 0)  # sorted
        assert np.all(hp >> (2 * (29 - order)) == pixel)
    assert not [p for p in out.rglob("*") if p.suffix == ".crc" or p.name == "_SUCCESS"]
    schemas = {pq.read_schema(f) for f in files}
    assert len(schemas) == 1


def test_properties_hold_provenance_and_arguments(collections, model_dir):
    out, _ = collections[0]
    text = (out / NAME / "hats.properties").read_text()
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    for key in ("obs_collection", "dataproduct_type", "hats_col_ra", "hats_col_dec", "hats_nrows",
                "hats_max_rows", "hats_order", "hats_builder", "hats_creation_date",
                "hats_estsize"):  # fmt: skip
        assert props.get(key), key
    assert props["obs_collection"] == NAME and props["dataproduct_type"] == "object"
    assert props["hats_nrows"] == "1363" and props["hats_max_rows"] == str(MAX_ROWS)
    assert props["hats_builder"].startswith("varsky ")
    assert props["varsky_schema_version"] == CLASSIFICATION_SCHEMA_VERSION
    assert props["varsky_input_catalogs"] == "ZTF DR5"
    assert props["varsky_model_dir"] == str(model_dir.resolve())
    assert props["varsky_processing_time_utc"] == "2026-09-21T14:13:20+00:00"
    args = json.loads(props["varsky_job_arguments"])
    assert args["max_rows_per_pixel"] == MAX_ROWS and args["margin_arcsec"] == MARGIN_ARCSEC


def test_column_types_are_fixed(table):
    schema = table.schema
    expected = {"objectid": pa.int64(), "_healpix_29": pa.int64(), "ra": pa.float64(),
                "dec": pa.float64(), "n_good": pa.int32(), "p_rrab": pa.float32(),
                "p_sn_ia": pa.float32(), "p_transient": pa.float32(),
                "predicted_class": pa.string(), "predicted_score": pa.float32(),
                "model_sha256": pa.string(), "input_catalog": pa.string(),
                "processing_time_utc": pa.timestamp("us", tz="UTC")}  # fmt: skip
    for name, kind in expected.items():
        assert schema.field(name).type == kind, name
    times = table.column("processing_time_utc").to_pylist()
    assert {t.isoformat() for t in times} == {"2026-09-21T14:13:20+00:00"}


def test_reruns_are_byte_identical(collections):
    (a, _), (b, _) = collections

    def digests(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.parquet"))
        }

    assert digests(a / NAME) == digests(b / NAME) and len(digests(a / NAME)) > 3
    assert digests(a / f"{NAME}_30arcs") == digests(b / f"{NAME}_30arcs")


def test_lsdb_opens_the_collection_and_every_row(collections, table):
    out, _ = collections[0]
    catalog = lsdb.open_catalog(out)
    frame = catalog.compute()
    assert len(frame) == table.num_rows == 1363
    assert set(frame["objectid"]) == set(table.column("objectid").to_pylist())
    assert catalog.margin is not None and len(catalog.margin.compute()) > 0


def test_cone_search_equals_brute_force(collections, table):
    out, _ = collections[0]
    catalog = lsdb.open_catalog(out)
    ra, dec = table.column("ra").to_numpy(), table.column("dec").to_numpy()
    for k, radius_arcsec in ((0, 600.0), (500, 1200.0), (1000, 90.0)):
        found = catalog.cone_search(ra[k], dec[k], radius_arcsec).compute()
        inside = _separation_arcsec(ra[k], dec[k], ra, dec) <= radius_arcsec
        assert set(found["objectid"]) == set(table.column("objectid").to_numpy()[inside])
        assert inside.sum() >= 1


def test_crossmatch_finds_every_pair_even_at_tile_edges(collections, table, tmp_path):
    out, _ = collections[0]
    # A second catalog: every object 2 arcsec north, cut into tiles of its own.
    ra, dec = table.column("ra").to_numpy(), table.column("dec").to_numpy()
    ids = table.column("objectid").to_numpy()
    other = pa.table({"other_id": ids, "ra": ra, "dec": dec + 2.0 / 3600})
    # Brute force: the nearest classified object to each moved one (a few have a neighbour
    # closer than 2 arcsec).
    sep = _separation_arcsec(ra[:, None], dec[:, None] + 2.0 / 3600, ra[None, :], dec[None, :])
    expected = sorted(zip(ids[sep.argmin(axis=1)].tolist(), ids.tolist(), strict=True))
    moved = lsdb.from_dataframe(
        other.to_pandas(), ra_column="ra", dec_column="dec", catalog_name="other",
        partition_rows=400, highest_order=10,
    )  # fmt: skip
    assert len(moved.get_healpix_pixels()) > 1
    moved.write_catalog(tmp_path / "other")

    def pairs(right) -> pd.DataFrame:
        matched = (
            lsdb.open_catalog(tmp_path / "other")
            .crossmatch(right, radius_arcsec=2.5, n_neighbors=1, suffix_method="all_columns")
            .compute()
        )
        ours = [c for c in matched.columns if c.startswith("objectid")][0]
        theirs = [c for c in matched.columns if c.startswith("other_id")][0]
        return matched[[ours, theirs]].set_axis(["objectid", "other_id"], axis=1)

    with_margin = pairs(lsdb.open_catalog(out))  # the collection brings its margin cache
    found = sorted(
        zip(with_margin["objectid"].tolist(), with_margin["other_id"].tolist(), strict=True)
    )
    assert found == expected
    # Without the margin, pairs split by a tile edge are lost: the edges were exercised.
    without = pairs(lsdb.open_catalog(out / NAME))
    assert len(without) < table.num_rows


def test_pandas_pyarrow_spark_and_duckdb_read_the_same_rows(spark, collections, table):
    out, _ = collections[0]
    dataset = out / NAME / "dataset"
    files = [str(f) for f in hats_partition_files(str(out / NAME))]
    expected = sorted(table.column("objectid").to_pylist())
    with_pandas = pd.concat([pd.read_parquet(f) for f in files])
    with_pyarrow = pds.dataset(files, format="parquet").to_table()
    with_spark = spark.read.parquet(*files).select("objectid").collect()
    with_duckdb = duckdb.sql(
        f"SELECT objectid FROM read_parquet('{dataset}/Norder=*/Dir=*/Npix=*.parquet')"
    ).fetchall()
    assert sorted(with_pandas["objectid"]) == expected
    assert sorted(with_pyarrow.column("objectid").to_pylist()) == expected
    assert sorted(r["objectid"] for r in with_spark) == expected
    assert sorted(r[0] for r in with_duckdb) == expected
    # The _metadata file indexes every row group of every file.
    assert pq.read_metadata(dataset / "_metadata").num_rows == len(expected)


@pytest.fixture(scope="module")
def sky_collection(spark, model_dir, tmp_path_factory):
    """A simulated sky's DR Parquet files, classified."""
    from udfs.simulators.sky_simulator import SkyConfig, simulate_sky

    root = tmp_path_factory.mktemp("sky_classification")
    simulate_sky(
        SkyConfig(n_objects=400, seed=9, ccds_per_side=1, survey_days=300.0), root / "sky", 2
    )
    out = root / "classified"
    config = ClassifyConfig(
        inputs=(str(root / "sky" / "dr_parquet"),), output=str(out), rejects=str(out) + "_r",
        model_dir=str(model_dir), max_rows_per_pixel=60, margin_arcsec=MARGIN_ARCSEC,
    )  # fmt: skip
    summary = run_classify(spark, config, log=lambda *_: None)
    files = hats_partition_files(str(out / NAME))
    return out, summary, pa.concat_tables(pq.read_table(f) for f in files)


def test_a_simulated_sky_gives_a_valid_catalog_lsdb_opens(sky_collection):
    out, summary, table = sky_collection
    assert summary.rows_out == table.num_rows > 100 and len(summary.tiles) > 2
    assert is_valid_catalog(out / NAME, strict=True) and is_valid_collection(out, strict=True)
    catalog = lsdb.open_catalog(out)
    assert sorted(catalog.compute()["objectid"]) == sorted(table.column("objectid").to_pylist())
    ra, dec = table.column("ra").to_numpy(), table.column("dec").to_numpy()
    found = catalog.cone_search(ra[0], dec[0], 900.0).compute()
    inside = _separation_arcsec(ra[0], dec[0], ra, dec) <= 900.0
    assert set(found["objectid"]) == set(table.column("objectid").to_numpy()[inside])
    matched = catalog.crossmatch(catalog, radius_arcsec=0.1, n_neighbors=1).compute()
    assert len(matched) == table.num_rows  # every object finds itself, edges included


def test_report_on_the_classify_output_remakes_its_probabilities(collections, tmp_path):
    from reports.catalog_report import make_report

    out, summary = collections[0]
    result = make_report(out, tmp_path / "report", log=lambda *_: None)
    assert result.n_objects == summary.rows_out
    # The examples' light curves, refetched and cut as classify cut them (bad exposures too),
    # give the catalog's probabilities again.
    assert not [n for n in result.notes if "differ" in n or "not found" in n], result.notes
    assert any("dmdt_examples" in p.name for p in result.figures.values())
