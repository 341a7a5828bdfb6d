import hashlib
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from scipy.spatial import cKDTree

from catalogs.dr_lightcurves import check_dr_files
from catalogs.time_scales import heliocentric_mjd
from catalogs.ztf_psfcat import psfcat_quality, read_psfcat, read_refpsfcat
from jobs.cli import main
from udfs.simulators.sky_simulator import (
    DETECTIONS_SCHEMA,
    DR_CATFLAGS_BAD,
    DR_PARQUET_SCHEMA,
    MIN_SEPARATION_ARCSEC,
    TRUTH_DETECTIONS_SCHEMA,
    TRUTH_DR_OBJECTS_SCHEMA,
    TRUTH_EXPOSURES_SCHEMA,
    TRUTH_OBJECTS_SCHEMA,
    TRUTH_REFERENCE_SCHEMA,
    SkyConfig,
    SkyLayout,
    _field_schedule,
    dr_objectid,
    simulate_sky,
)

SMALL = SkyConfig(
    n_objects=300, seed=7, survey_days=60.0, ccds_per_side=1, bad_exposure_fraction=0.05
)


@pytest.fixture(scope="module")
def skies(tmp_path_factory):
    """The small sky written twice: with one worker, then with two."""
    one = tmp_path_factory.mktemp("sky1")
    two = tmp_path_factory.mktemp("sky2")
    return simulate_sky(SMALL, one, workers=1), simulate_sky(SMALL, two, workers=2)


@pytest.fixture(scope="module")
def sky(skies):
    return skies[0]


@pytest.fixture(scope="module")
def psfcat(sky):
    files = sorted((sky.output / SkyLayout.PSFCAT).glob("*.fits"))
    return pa.concat_tables([read_psfcat(f) for f in files])


@pytest.fixture(scope="module")
def truth(sky):
    names = {
        "objects": SkyLayout.TRUTH_OBJECTS,
        "detections": SkyLayout.TRUTH_DETECTIONS,
        "dr": SkyLayout.TRUTH_DR_OBJECTS,
        "reference": SkyLayout.TRUTH_REFERENCE,
        "exposures": SkyLayout.TRUTH_EXPOSURES,
    }
    return {key: pq.read_table(sky.output / name) for key, name in names.items()}


def _detections_with_truth(psfcat, truth):
    """psfcat rows joined to their truth object."""
    return psfcat.join(
        truth["detections"].select(["detid", "truth_id"]), "detid", join_type="inner"
    ).join(truth["objects"].rename_columns({"ra": "true_ra", "dec": "true_dec"}), "truth_id")


def test_every_file_type_exists_and_opens(sky, psfcat, truth):
    psfcat_files = list((sky.output / SkyLayout.PSFCAT).glob("*.fits"))
    assert len(psfcat_files) == sky.files[SkyLayout.PSFCAT] > 100
    assert all(
        re.fullmatch(r"ztf_\d{14}_\d{6}_z[gri]_c\d\d_o_q[1-4]_psfcat\.fits", f.name)
        for f in psfcat_files
    )
    assert psfcat.num_rows == sky.n_detections > 5000
    ref_files = sorted((sky.output / SkyLayout.REFPSFCAT).glob("*_refpsfcat.fits"))
    assert len(ref_files) == sky.files[SkyLayout.REFPSFCAT] > 0
    ref = pa.concat_tables([read_refpsfcat(f) for f in ref_files])
    assert sorted(ref["refid"].to_pylist()) == sorted(truth["reference"]["refid"].to_pylist())

    dr_files = check_dr_files([str(sky.output / SkyLayout.DR_PARQUET)])
    assert len(dr_files) == sky.files[SkyLayout.DR_PARQUET] > 0
    assert all(
        re.fullmatch(r"ztf_\d{6}_z[gri]_c\d\d_q[1-4]_dr5\.parquet", Path(f.path).name)
        for f in dr_files
    )
    assert {f.hmjd_type for f in dr_files} == {"double"}
    dr = pq.read_table(sky.output / SkyLayout.DR_PARQUET)
    assert dr.schema.remove_metadata() == DR_PARQUET_SCHEMA
    for name in ("hmjd", "mag", "magerr", "clrcoeff", "catflags"):
        lengths = pc.list_value_length(dr[name]).to_numpy()
        np.testing.assert_array_equal(lengths, dr["nepochs"].to_numpy())
    assert set(pc.list_flatten(dr["catflags"]).to_pylist()) <= {0, DR_CATFLAGS_BAD}
    objectid = dr["objectid"].to_numpy()
    assert np.unique(objectid).size == objectid.size
    assert all(len(str(o)) == 15 for o in objectid)
    assert pc.sum(dr["nepochs"]).as_py() == sky.n_detections

    detections = pq.read_table(sky.output / SkyLayout.DETECTIONS)
    assert detections.schema.remove_metadata() == DETECTIONS_SCHEMA
    assert detections.num_rows == sky.n_detections
    assert set(detections["band"].to_pylist()) <= {"g", "r", "i"}

    for key, schema in [
        ("objects", TRUTH_OBJECTS_SCHEMA),
        ("detections", TRUTH_DETECTIONS_SCHEMA),
        ("dr", TRUTH_DR_OBJECTS_SCHEMA),
        ("reference", TRUTH_REFERENCE_SCHEMA),
        ("exposures", TRUTH_EXPOSURES_SCHEMA),
    ]:
        assert truth[key].schema.remove_metadata() == schema
    assert truth["objects"]["truth_id"].to_pylist() == list(range(SMALL.n_objects))
    assert f"{sky.n_detections:,} rows" in sky.format()


def test_every_detection_is_in_the_truth_once(sky, psfcat, truth):
    detid = psfcat["detid"].to_numpy()
    assert np.unique(detid).size == detid.size
    true_detid = truth["detections"]["detid"].to_numpy()
    np.testing.assert_array_equal(np.sort(true_detid), np.sort(detid))
    # source_file and sourceid point at the row.
    joined = psfcat.join(truth["detections"], "detid", join_type="inner", right_suffix="_truth")
    names = [Path(p).name for p in joined["source_file"].to_pylist()]
    assert names == joined["source_file_truth"].to_pylist()
    assert joined["sourceid"].equals(joined["sourceid_truth"])
    # The long-format copy of each detection has the same values.
    long = pq.read_table(sky.output / SkyLayout.DETECTIONS / joined["detections_file"][0].as_py())
    first = joined.filter(pc.equal(joined["detections_file"], joined["detections_file"][0]))
    rows = first["detections_row"].to_numpy()
    np.testing.assert_array_equal(long["mag"].to_numpy()[rows], first["mag"].to_numpy())
    np.testing.assert_array_equal(long["ra"].to_numpy()[rows], first["ra"].to_numpy())
    np.testing.assert_array_equal(long["mjd"].to_numpy()[rows], first["mjd"].to_numpy())


def test_reference_catalogs_list_every_detected_object(psfcat, truth):
    det = _detections_with_truth(psfcat, truth)
    seen = set(
        zip(
            det["truth_id"].to_pylist(),
            det["fieldid"].to_pylist(),
            det["rcid"].to_pylist(),
            (b + 1 for b in det["band"].to_pylist()),
            strict=True,
        )
    )
    ref = truth["reference"]
    listed = set(
        zip(
            ref["truth_id"].to_pylist(),
            ref["fieldid"].to_pylist(),
            ref["rcid"].to_pylist(),
            ref["filterid"].to_pylist(),
            strict=True,
        )
    )
    assert seen <= listed
    assert len(listed) > len(seen)  # faint objects are listed but not always detected


def test_dr_light_curves_match_the_detections(sky, psfcat, truth):
    dr = truth["dr"]
    det = _detections_with_truth(psfcat, truth)
    counts = det.group_by(["truth_id", "fieldid", "rcid", "band"]).aggregate([("detid", "count")])
    by_key = {
        (t, f, r, b + 1): n
        for t, f, r, b, n in zip(*(counts[c].to_pylist() for c in counts.column_names), strict=True)
    }
    dr_keys = zip(
        *(dr[c].to_pylist() for c in ("truth_id", "fieldid", "rcid", "filterid", "nepochs")),
        strict=True,
    )
    assert {(t, f, r, b): n for t, f, r, b, n in dr_keys} == by_key
    # DR times are the psfcat times, made heliocentric at the object's position.
    dr_file = dr["source_file"][0].as_py()
    rows = truth["dr"].filter(pc.equal(truth["dr"]["source_file"], dr_file))
    light_curves = pq.read_table(sky.output / SkyLayout.DR_PARQUET / dr_file)
    det_truth, det_field, det_rcid, det_band, det_mjd = (
        det[c].to_numpy() for c in ("truth_id", "fieldid", "rcid", "band", "mjd")
    )
    for truth_id, row in zip(
        rows["truth_id"].to_pylist(), rows["source_row"].to_pylist(), strict=True
    ):
        lc = light_curves.slice(row, 1).to_pylist()[0]
        mine = (
            (det_truth == truth_id)
            & (det_field == lc["fieldid"])
            & (det_rcid == lc["rcid"])
            & (det_band == lc["filterid"] - 1)
        )
        mjd = np.sort(det_mjd[mine])
        expected = heliocentric_mjd(
            mjd, np.full(mjd.size, lc["objra"]), np.full(mjd.size, lc["objdec"])
        )
        np.testing.assert_allclose(lc["hmjd"], expected, rtol=0, atol=1e-8)
        assert np.all(np.abs(expected - mjd) < 0.0058)
    # Flagged epochs: catflags 32768 exactly where the psfcat quality rule fails.
    table = pq.read_table(sky.output / SkyLayout.DR_PARQUET)
    bad_dr = int((pc.list_flatten(table["catflags"]).to_numpy() == DR_CATFLAGS_BAD).sum())
    good = psfcat_quality(psfcat["flags"].to_numpy(), psfcat["infobits"].to_numpy())
    assert bad_dr == int((~good).sum()) > 0
    assert 0.001 < (psfcat["flags"].to_numpy() != 0).mean() < 0.015
    assert (psfcat["infobits"].to_numpy() != 0).any()


def test_detections_are_brighter_than_the_exposure_limit(psfcat, truth):
    exposures = truth["exposures"]
    limit = dict(
        zip(exposures["mjd"].to_pylist(), exposures["limiting_mag"].to_pylist(), strict=True)
    )
    mag = psfcat["mag"].to_numpy()
    assert np.all(mag <= np.array([limit[t] for t in psfcat["mjd"].to_pylist()]))
    assert 20.0 < np.percentile(mag, 99) < 21.5


def test_objects_in_the_overlap_are_seen_in_several_fields(truth):
    objects = truth["objects"]
    n_fields = objects["n_fields"].to_numpy()
    assert (n_fields > 1).sum() > 0.1 * n_fields.size
    dr = truth["dr"]
    fields_seen = dr.group_by("truth_id").aggregate([("fieldid", "count_distinct")])
    seen = dict(zip(*(fields_seen[c].to_pylist() for c in fields_seen.column_names), strict=True))
    assert max(seen.values()) > 1
    assert all(n_fields[t] >= n for t, n in seen.items())
    # Different fields observe at different times.
    exposures = truth["exposures"]
    assert np.unique(exposures["mjd"].to_numpy()).size == exposures.num_rows


def test_same_seed_same_files_whatever_the_workers(skies):
    def digests(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    one, two = skies
    assert one.workers == 1 and two.workers == 2
    first = digests(one.output)
    assert len(first) > 100
    assert first == digests(two.output)


def test_pairs_are_between_1_5_and_3_arcsec_and_nobody_is_closer(truth):
    objects = truth["objects"]
    ra = np.radians(objects["ra"].to_numpy())
    dec = np.radians(objects["dec"].to_numpy())
    xyz = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)
    companion = objects["companion_id"].to_numpy(zero_copy_only=False)
    paired = np.flatnonzero(~np.isnan(companion))
    assert paired.size >= 6
    chord = np.linalg.norm(xyz[paired] - xyz[companion[paired].astype(np.int64)], axis=1)
    separation = np.degrees(2 * np.arcsin(chord / 2)) * 3600
    assert separation.min() >= MIN_SEPARATION_ARCSEC and separation.max() <= 3.0
    distance, _ = cKDTree(xyz).query(xyz, k=2)
    nearest = np.degrees(2 * np.arcsin(distance[:, 1] / 2)) * 3600
    assert nearest.min() >= MIN_SEPARATION_ARCSEC


def test_astrometric_scatter_is_0_1_arcsec(psfcat, truth):
    det = _detections_with_truth(psfcat, truth)
    dec0 = np.radians(det["true_dec"].to_numpy())
    d_ra = (det["ra"].to_numpy() - det["true_ra"].to_numpy() + 180) % 360 - 180
    east = d_ra * np.cos(dec0) * 3600
    north = (det["dec"].to_numpy() - det["true_dec"].to_numpy()) * 3600
    for offset in (east, north):
        assert abs(offset.mean()) < 0.01
        assert offset.std() == pytest.approx(SMALL.astrometric_sigma_arcsec, rel=0.05)


def test_most_objects_are_constant(truth):
    classes = truth["objects"]["class_name"].to_pylist()
    assert 0.75 < classes.count("constant") / len(classes) < 0.95


def test_field_schedule_is_ztf_like():
    config = SkyConfig()
    rng = np.random.default_rng(0)
    sched = _field_schedule(rng, config, ra_deg=41.7, dec_deg=-26.6)
    mjd, band = sched["mjd"], sched["filterid"]
    assert np.all(np.diff(mjd) >= 1 / 1440)  # a minute between exposures
    nights = np.unique(np.floor(mjd))
    gaps = np.diff(nights)
    assert 1.0 <= np.median(gaps) <= 4.0
    assert gaps.max() > 90  # seasons behind the Sun
    counts = np.bincount(band, minlength=4)
    assert counts[1] > 100 and counts[2] > 100
    assert 0.01 < counts[3] / band.size < 0.15
    assert sched["limiting_mag"].min() > 19.0 and sched["limiting_mag"].max() < 21.5


def test_sky_across_ra_zero(tmp_path):
    config = SkyConfig(
        n_objects=150, ra_deg=0.02, dec_deg=5.0, radius_deg=0.1, survey_days=15.0, ccds_per_side=1
    )
    simulate_sky(config, tmp_path, workers=1)
    ra = pq.read_table(tmp_path / SkyLayout.TRUTH_OBJECTS)["ra"].to_numpy()
    assert (ra < 1).any() and (ra > 359).any() and ((ra >= 0) & (ra < 360)).all()
    det_ra = pq.read_table(tmp_path / SkyLayout.DETECTIONS)["ra"].to_numpy()
    assert (det_ra < 1).any() and (det_ra > 359).any()


def test_sky_with_almost_no_exposures(tmp_path):
    summary = simulate_sky(SkyConfig(n_objects=20, survey_days=1.0), tmp_path, workers=1)
    objects = pq.read_table(tmp_path / SkyLayout.TRUTH_OBJECTS)
    assert objects.num_rows == 20
    assert summary.n_exposures < 10


def test_dr_objectid_is_ztf_like():
    # The bundled DR5 sample's first object: field 250, g, CCD 01, quadrant 1, number 1.
    assert dr_objectid(250, 1, 1, 1, 1) == 250101100000001


def test_config_errors_name_the_parameter():
    with pytest.raises(ValueError, match=r"sky: n_objects must be >= 1, got 0"):
        SkyConfig(n_objects=0)
    with pytest.raises(ValueError, match=r"sky: radius_deg must be in \(0, 30.0\], got 45"):
        SkyConfig(radius_deg=45)
    with pytest.raises(ValueError, match=r"sky: survey_start_mjd must be >= 58200.0"):
        SkyConfig(survey_start_mjd=50000.0)


def test_command_line(tmp_path, capsys):
    out = tmp_path / "sky"
    args = ["simulate", "--output", str(out), "--objects", "40", "--survey-days", "10"]
    args += ["--ccds-per-side", "1", "--workers", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "psfcat/" in printed and "detections/s" in printed
    assert (out / SkyLayout.TRUTH_OBJECTS).is_file()
    assert main(args) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
