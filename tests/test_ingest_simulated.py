"""Ingest acceptance on a simulated sky: association against truth across tile boundaries."""

from __future__ import annotations

from pathlib import Path

import lsdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from catalogs.healpix import healpix_29
from jobs.ingest import IngestConfig, run_ingest
from udfs.simulators.sky_simulator import SkyConfig, simulate_sky


@pytest.fixture(scope="module")
def sky(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sky") / "sky"
    config = SkyConfig(
        n_objects=700, seed=5, pair_fraction=0.15, ccds_per_side=1, survey_days=300.0
    )
    simulate_sky(config, path, workers=2)
    return path


def _ingest(spark, fmt, inputs, out, references=(), work_rows=15_000):
    config = IngestConfig(
        input_format=fmt,
        inputs=tuple(map(str, inputs)),
        output=str(out),
        rejects=str(out) + "_rejects",
        references=tuple(map(str, references)),
        work_rows=work_rows,  # small tiles: many tile boundaries in a small sky
    )
    return run_ingest(spark, config, log=lambda *_: None)


def _scores(assignment: pd.DataFrame) -> tuple[float, float, int, int]:
    """Detection-level purity and completeness, and objects split or merged."""
    majority_truth = assignment.groupby("obj")["truth"].agg(lambda s: s.value_counts().idxmax())
    majority_obj = assignment.groupby("truth")["obj"].agg(lambda s: s.value_counts().idxmax())
    purity = np.mean(
        assignment["truth"].to_numpy() == majority_truth.loc[assignment["obj"]].to_numpy()
    )
    completeness = np.mean(
        assignment["obj"].to_numpy() == majority_obj.loc[assignment["truth"]].to_numpy()
    )
    split = int((assignment.groupby("truth")["obj"].nunique() > 1).sum())
    merged = int((assignment.groupby("obj")["truth"].nunique() > 1).sum())
    return purity, completeness, split, merged


@pytest.fixture(scope="module")
def psfcat_run(spark, sky, tmp_path_factory):
    out = tmp_path_factory.mktemp("psfcat") / "lightcurves"
    # With references the work tiles hold reference sources (about 2,900 here), not detections.
    summary = _ingest(
        spark, "psfcat", [sky / "psfcat"], out, references=[sky / "refpsfcat"], work_rows=600
    )
    return summary, lsdb.open_catalog(out).compute()


def test_psfcat_association_against_truth(psfcat_run, sky):
    summary, df = psfcat_run
    truth = pq.read_table(sky / "truth" / "detections.parquet", columns=["detid", "truth_id"])
    truth = truth.to_pandas().set_index("detid")["truth_id"]
    detids = np.concatenate([np.asarray(lc["detid"]) for lc in df["lightcurve"]])
    objs = np.repeat(df["objectid"].to_numpy(), [len(lc["detid"]) for lc in df["lightcurve"]])
    assignment = pd.DataFrame({"obj": objs, "truth": truth.loc[detids].to_numpy()})
    purity, completeness, split, merged = _scores(assignment)
    assert purity >= 0.999 and completeness >= 0.999, (purity, completeness)
    assert split == 0 and merged == 0
    assert df["objectid"].is_unique  # no object written by two tiles
    assert summary.rows_in == summary.rows_out + summary.rows_rejected
    assert summary.rows_in == truth.size


def test_the_sky_crosses_tile_boundaries(psfcat_run):
    summary, df = psfcat_run
    assert summary.work_tiles >= 4
    # Objects this close to another work tile had detections on both sides of the edge; the
    # association test above shows they were still built once and whole.
    ra, dec = df["ra"].to_numpy(), df["dec"].to_numpy()
    own = summary.tiles.tile_index(healpix_29(ra, dec))
    assert (own >= 0).all()
    straddling = np.zeros(ra.size, dtype=bool)
    for angle in np.linspace(0, 2 * np.pi, 16, endpoint=False):
        step = 3.0 / 3600  # 3 arcsec: within two detections' scatter of the edge
        moved_ra = ra + step * np.cos(angle) / np.cos(np.radians(dec))
        moved = summary.tiles.tile_index(healpix_29(moved_ra, dec + step * np.sin(angle)))
        straddling |= moved != own
    assert straddling.sum() >= 3


def test_dr_parquet_objects_merge_across_fields_and_bands(spark, sky, tmp_path):
    out = tmp_path / "dr"
    summary = _ingest(spark, "dr-parquet", [sky / "dr_parquet"], out)
    df = lsdb.open_catalog(out).compute()
    dr_truth = pq.read_table(sky / "truth" / "dr_objects.parquet", columns=["objectid", "truth_id"])
    dr_truth = dr_truth.to_pandas().set_index("objectid")["truth_id"]
    sources = [np.asarray(s) for s in df["source_ids"]]
    assignment = pd.DataFrame(
        {
            "obj": np.repeat(df["objectid"].to_numpy(), [s.size for s in sources]),
            "truth": dr_truth.loc[np.concatenate(sources)].to_numpy(),
        }
    )
    purity, completeness, split, merged = _scores(assignment)
    assert (purity, completeness, split, merged) == (1.0, 1.0, 0, 0)
    multi_band = ((df["n_epochs_g"] > 0) & (df["n_epochs_r"] > 0)).mean()
    assert multi_band > 0.5
    assert summary.rows_in == summary.rows_out + summary.rows_rejected


def test_lsdb_crossmatch_pairs_the_same_true_objects(spark, sky, psfcat_run, tmp_path):
    summary, _ = psfcat_run
    dr_out = tmp_path / "dr_for_crossmatch"
    _ingest(spark, "dr-parquet", [sky / "dr_parquet"], dr_out)
    left = lsdb.open_catalog(summary.output)
    right = lsdb.open_catalog(dr_out)
    matched = left.crossmatch(right, radius_arcsec=1.0, n_neighbors=1, suffixes=("_psf", "_dr"))
    pairs = matched.compute()
    ref_truth = pq.read_table(sky / "truth" / "reference.parquet", columns=["refid", "truth_id"])
    ref_truth = ref_truth.to_pandas().set_index("refid")["truth_id"]
    dr_truth = pq.read_table(sky / "truth" / "dr_objects.parquet", columns=["objectid", "truth_id"])
    dr_truth = dr_truth.to_pandas().set_index("objectid")["truth_id"]
    truth_left = ref_truth.loc[pairs["objectid_psf"].to_numpy()].to_numpy()
    truth_right = dr_truth.loc[pairs["objectid_dr"].to_numpy()].to_numpy()
    assert len(pairs) > 0.9 * len(left.compute())
    assert (truth_left == truth_right).mean() >= 0.999


def test_a_psfcat_file_given_twice_is_rejected_as_duplicates(spark, sky, psfcat_run, tmp_path):
    """The same exposure under a second path: its good detections are kept once, rejected once."""
    import shutil

    import pyarrow.dataset as ds

    from catalogs.schema import DetectionRejectReason

    first, _ = psfcat_run
    copied = sorted((sky / "psfcat").rglob("*_psfcat.fits"))[0]
    (tmp_path / "again").mkdir()
    shutil.copy(copied, tmp_path / "again" / copied.name)
    out = tmp_path / "twice"
    summary = _ingest(
        spark,
        "psfcat",
        [sky / "psfcat", tmp_path / "again"],
        out,
        references=[sky / "refpsfcat"],
        work_rows=600,
    )
    dup = DetectionRejectReason.DUPLICATE
    n_copy = summary.rows_in - first.rows_in
    new_dups = summary.rejected_by_reason.get(dup, 0) - first.rejected_by_reason.get(dup, 0)
    new_other = (summary.rows_rejected - summary.rejected_by_reason.get(dup, 0)) - (
        first.rows_rejected - first.rejected_by_reason.get(dup, 0)
    )
    assert n_copy > 0 and new_dups > 0
    assert new_dups + new_other == n_copy  # each good row of the copy is a duplicate
    assert summary.rows_out == first.rows_out  # the light curves are the same
    assert summary.rows_in == summary.rows_out + summary.rows_rejected
    rejects = ds.dataset(str(out) + "_rejects").to_table().to_pandas()
    dups = rejects[rejects["reject_reason"] == dup]
    assert len(dups) == summary.rejected_by_reason[dup]
    assert dups["detid"].is_unique
    assert all(Path(f).name == copied.name for f in dups["source_file"])  # its path, as text
