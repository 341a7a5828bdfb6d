"""`varsky ingest` end to end with Spark: the real DR5 sample and edited copies of it."""

from __future__ import annotations

from pathlib import Path

import lsdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from jobs.ingest import IngestConfig, run_ingest


def _config(fmt, inputs, out: Path, **kw) -> IngestConfig:
    return IngestConfig(
        input_format=fmt,
        inputs=tuple(str(p) for p in inputs),
        output=str(out),
        rejects=str(out) + "_rejects",
        **kw,
    )


def _good_epochs_by_object(sample_file) -> dict[int, int]:
    t = pq.read_table(sample_file).to_pydict()
    return {
        oid: sum(1 for f in flags if f == 0)
        for oid, flags in zip(t["objectid"], t["catflags"], strict=True)
    }


@pytest.fixture(scope="module")
def dr_ingest(spark, sample_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("dr") / "lightcurves"
    summary = run_ingest(spark, _config("dr-parquet", [sample_file], out), log=lambda *_: None)
    return summary, out


def test_dr_sample_accounting_and_lsdb(dr_ingest, sample_file):
    summary, out = dr_ingest
    good = _good_epochs_by_object(sample_file)
    assert summary.rows_in == 106_588
    assert summary.rejected_by_reason == {"flagged": 8422}
    assert summary.rows_out == sum(good.values()) == 98_166
    catalog = lsdb.open_catalog(out)
    df = catalog.compute()
    assert len(df) == summary.objects_out == sum(1 for n in good.values() if n > 0)
    # All sample rows come from one DR file: no two may merge.
    assert df["objectid"].is_unique
    assert set(df["objectid"]) == {oid for oid, n in good.items() if n > 0}
    counts = dict(zip(df["objectid"], df["n_epochs_g"], strict=True))
    assert all(counts[oid] == n for oid, n in good.items() if n > 0)
    rejects = pq.read_table(str(out) + "_rejects")
    assert rejects.num_rows == 8422 and set(rejects.column("flags").to_pylist()) != {0}


def test_dr_light_curves_are_time_sorted_float64(dr_ingest):
    _, out = dr_ingest
    table = pq.read_table(next(Path(out, "dataset").rglob("Npix=*.parquet")))
    lc = table.column("lightcurve").combine_chunks()
    assert lc.type.field("hmjd").type == pa.list_(pa.float64())
    for row in lc.slice(0, 200).to_pylist():
        assert row["hmjd"] == sorted(row["hmjd"])


def test_dr_cone_search_equals_brute_force(dr_ingest):
    _, out = dr_ingest
    catalog = lsdb.open_catalog(out)
    all_rows = catalog.compute()
    ra0, dec0, radius_arcsec = 41.7, -26.6, 900.0
    cone = catalog.cone_search(ra0, dec0, radius_arcsec).compute()
    ra, dec = np.radians(all_rows["ra"]), np.radians(all_rows["dec"])
    cos_d = np.sin(dec) * np.sin(np.radians(dec0)) + np.cos(dec) * np.cos(
        np.radians(dec0)
    ) * np.cos(ra - np.radians(ra0))
    sep_arcsec = np.degrees(np.arccos(np.clip(cos_d, -1, 1))) * 3600
    assert set(cone["objectid"]) == set(all_rows["objectid"][sep_arcsec <= radius_arcsec])
    assert len(cone) > 100


def _shifted_times(hmjd: pa.ListArray, days: float) -> pa.ListArray:
    values = pc.add(pc.cast(hmjd.flatten(), pa.float64()), days)
    return pa.ListArray.from_arrays(pc.subtract(hmjd.offsets, hmjd.offsets[0]), values)


def _second_field_copy(sample_file, path: Path) -> dict[int, int]:
    """The sample as if seen again in r by another field: new ids, positions moved ~0.1 arcsec."""
    table = pq.read_table(sample_file)
    rng = np.random.default_rng(7)
    n = table.num_rows
    dec = table.column("objdec").to_numpy().astype(np.float64)
    shift = rng.normal(0, 0.1 / 3600, (2, n))
    ra = table.column("objra").to_numpy() + shift[0] / np.cos(np.radians(dec))
    new_ids = table.column("objectid").to_numpy() + 10**14
    edits = {
        "objectid": pa.array(new_ids),
        "fieldid": pa.array(np.full(n, 1250, np.int16)),
        "filterid": pa.array(np.full(n, 2, np.uint8)),
        "objra": pa.array(ra.astype(np.float32)),
        "objdec": pa.array((dec + shift[1]).astype(np.float32)),
        # Other exposures, stored as float64 (IRSA's own type) beside the float32 sample.
        "hmjd": _shifted_times(table.column("hmjd").combine_chunks(), 0.01),
    }
    for name, values in edits.items():
        table = table.set_column(table.schema.get_field_index(name), name, values)
    pq.write_table(table, path)
    return dict(zip(new_ids.tolist(), table.column("objectid").to_numpy() - 10**14, strict=True))


def test_objects_merge_across_fields_and_bands(spark, sample_file, tmp_path):
    copy = tmp_path / "ztf_001250_zr_c01_q1_dr5.parquet"
    partner = _second_field_copy(sample_file, copy)
    out = tmp_path / "merged"
    summary = run_ingest(
        spark, _config("dr-parquet", [sample_file, copy], out), log=lambda *_: None
    )
    df = lsdb.open_catalog(out).compute()
    good = _good_epochs_by_object(sample_file)
    n_with_epochs = sum(1 for n in good.values() if n > 0)
    assert len(df) == summary.objects_out == n_with_epochs
    assert summary.rows_out == 2 * 98_166
    for sources, n_g, n_r in zip(df["source_ids"], df["n_epochs_g"], df["n_epochs_r"], strict=True):
        sources = list(sources)
        assert len(sources) == 2, sources
        a, b = sorted(sources)
        assert partner[b] == a
        assert n_g == n_r == good[a]


def test_detections_without_objectid_are_clustered(spark, sample_file, tmp_path):
    table = pq.read_table(sample_file).to_pydict()
    rng = np.random.default_rng(3)
    rows = {k: [] for k in ("ra", "dec", "mjd", "band", "mag", "magerr", "flags", "truth")}
    for oid, ra, dec, hmjd, mag, err, flags in zip(
        table["objectid"], table["objra"], table["objdec"], table["hmjd"], table["mag"],
        table["magerr"], table["catflags"], strict=True,
    ):  # fmt: skip
        seen = set()
        for k in range(len(hmjd)):
            # One detection per exposure: the float32 sample rounds some distinct exposures to
            # one time, which would look like one object seen twice in one exposure.
            if hmjd[k] in seen:
                continue
            seen.add(hmjd[k])
            rows["ra"].append(ra + rng.normal(0, 0.1 / 3600) / np.cos(np.radians(dec)))
            rows["dec"].append(dec + rng.normal(0, 0.1 / 3600))
            rows["mjd"].append(hmjd[k])
            rows["band"].append("g")
            rows["mag"].append(mag[k])
            rows["magerr"].append(err[k])
            rows["flags"].append(flags[k])
            rows["truth"].append(oid)
    path = tmp_path / "detections.parquet"
    pq.write_table(pa.table(rows), path)
    out = tmp_path / "clustered"
    summary = run_ingest(spark, _config("detections", [path], out), log=lambda *_: None)
    assert summary.rows_in == len(rows["ra"])
    assert summary.rows_in == summary.rows_out + summary.rows_rejected
    df = lsdb.open_catalog(out).compute()
    truth = np.asarray(rows["truth"])
    truth_of_detid = {}
    for detids, oid in zip(df["lightcurve"], df["objectid"], strict=True):
        for d in detids["detid"]:
            truth_of_detid[int(d)] = (truth[int(d) & ((1 << 40) - 1)], oid)
    pairs = set(truth_of_detid.values())
    objects_per_truth = {}
    truths_per_object = {}
    for t, o in pairs:
        objects_per_truth.setdefault(t, set()).add(o)
        truths_per_object.setdefault(o, set()).add(t)
    split = sum(len(v) > 1 for v in objects_per_truth.values())
    merged = sum(len(v) > 1 for v in truths_per_object.values())
    assert split == 0 and merged == 0


def test_classify_reads_the_ingest_catalog_like_the_dr_file(
    spark, dr_ingest, sample_file, model_dir, tmp_path
):
    from jobs.classify import ClassifyConfig, run_classify

    _, catalog = dr_ingest
    outputs = {}
    for name, inputs in (("from_hats", [catalog]), ("from_dr", [sample_file])):
        out = tmp_path / name
        config = ClassifyConfig(
            inputs=tuple(str(p) for p in inputs), output=str(out),
            rejects=str(out) + "_rejects", model_dir=str(model_dir),
            bad_exposure_fraction=0.0,  # the HATS input has no exposure keys
        )  # fmt: skip
        run_classify(spark, config, log=lambda *_: None)
        outputs[name] = lsdb.open_catalog(out).compute().sort_values("objectid")
    a, b = outputs["from_hats"], outputs["from_dr"]
    assert len(a) == len(b) == 1363
    for column in ("objectid", "n_good", "n_good_g", "p_constant", "p_rrab", "predicted_class"):
        assert a[column].tolist() == b[column].tolist(), column
    assert set(a["input_catalog"]) == {"varsky_lightcurves"}  # the ingest catalog's name
    assert set(b["input_catalog"]) == {"ZTF DR5"}


def test_hats_input_in_irsa_layout(spark, sample_file, tmp_path):
    """The sample as IRSA publishes ZTF DR light curves in HATS: a nested lightcurve column."""
    t = pq.read_table(sample_file)
    nested = pa.StructArray.from_arrays(
        [t[c].combine_chunks() for c in ("hmjd", "mag", "magerr", "clrcoeff", "catflags")],
        names=["hmjd", "mag", "magerr", "clrcoeff", "catflags"],
    )
    table = pa.table(
        {c: t[c] for c in ("objectid", "objra", "objdec", "filterid", "fieldid", "rcid", "nepochs")}
        | {"lightcurve": nested}
    )
    # Written by lsdb, as IRSA's catalogs are: a collection whose catalog is ztf_dr5_lc.
    lsdb.from_dataframe(
        table.to_pandas(types_mapper=pd.ArrowDtype), ra_column="objra", dec_column="objdec",
        catalog_name="ztf_dr5_lc", partition_rows=2000,
    ).write_catalog(tmp_path / "irsa")  # fmt: skip
    irsa = tmp_path / "irsa" / "ztf_dr5_lc"
    assert len(list(irsa.rglob("Npix=*.parquet"))) > 1
    out = tmp_path / "from_hats"
    summary = run_ingest(spark, _config("hats", [irsa], out), log=lambda *_: None)
    assert summary.rows_in == 106_588
    assert summary.rejected_by_reason == {"flagged": 8422}
    assert summary.rows_out == 98_166
    assert len(lsdb.open_catalog(out).compute()) == summary.objects_out == 5301


# --- other surveys' bands: --band-map ----------------------------------------------------------


def _crts_slice(n_objects: int) -> pa.Table:
    from tests.conftest import REPO

    real = REPO / "data" / "real_labelled"
    labels = pq.read_table(real / "crts_train_labels.parquet").slice(0, n_objects)
    dets = pq.read_table(real / "crts_train_detections.parquet")
    keep = pc.is_in(dets.column("objectid"), labels.column("objectid"))
    dets = dets.filter(keep)
    ids = dict(zip(labels.column("objectid").to_pylist(), labels.column("objectid_int").to_pylist(),
                   strict=True))  # fmt: skip
    return dets.set_column(
        0, "objectid", pa.array([ids[o] for o in dets.column("objectid").to_pylist()], pa.int64())
    )


def test_crts_detections_with_band_map(spark, tmp_path):
    from catalogs.band_map import BandMap

    dets = _crts_slice(4)
    path = tmp_path / "crts.parquet"
    pq.write_table(dets, path)
    out = tmp_path / "crts_lc"
    config = _config("detections", [path], out, band_map=BandMap.parse("V=g"))
    summary = run_ingest(spark, config, log=lambda *_: None)
    assert summary.rows_in == dets.num_rows == summary.rows_out + summary.rows_rejected
    df = lsdb.open_catalog(out).compute()
    assert sorted(df["objectid"]) == sorted(set(dets.column("objectid").to_pylist()))
    for oid, lc in zip(df["objectid"], df["lightcurve"], strict=True):
        mine = dets.filter(pc.equal(dets.column("objectid"), oid))
        assert set(lc["band"]) == {0}  # V -> g
        np.testing.assert_array_equal(np.sort(lc["hmjd"]), np.sort(mine.column("mjd").to_numpy()))
    props = (out / "hats.properties").read_text()
    assert '"V": "g"' in props.replace("\\\\", "")


def test_unmapped_band_is_a_clear_error(spark, tmp_path):
    from catalogs.errors import InputError

    path = tmp_path / "crts.parquet"
    pq.write_table(_crts_slice(1), path)
    with pytest.raises(
        InputError, match=r"crts.parquet, column 'band', row 0: band 'V' .*--band-map V=g"
    ):
        run_ingest(spark, _config("detections", [path], tmp_path / "out"), log=lambda *_: None)


def test_string_objectid_is_a_clear_error(spark, tmp_path):
    from catalogs.band_map import BandMap
    from catalogs.errors import InputError

    path = tmp_path / "s.parquet"
    pq.write_table(_crts_slice(1).set_column(0, "objectid", pa.array(["x"] * 1, pa.string()).take(
        pa.array(np.zeros(_crts_slice(1).num_rows, np.int64)))), path)  # fmt: skip
    with pytest.raises(InputError, match="objectid must be an integer type"):
        run_ingest(spark, _config("detections", [path], tmp_path / "out",
                                  band_map=BandMap.parse("crts")), log=lambda *_: None)  # fmt: skip


def _rubin_table() -> pa.Table:
    rng = np.random.default_rng(5)
    rows = {k: [] for k in ("objectid", "ra", "dec", "mjd", "band", "mag", "magerr")}
    for oid, (ra, dec) in enumerate([(150.0, 2.0), (150.1, 2.05)], start=1):
        for k in range(60):
            rows["objectid"].append(oid)
            rows["ra"].append(ra)
            rows["dec"].append(dec)
            rows["mjd"].append(60800.0 + 3.1 * k + 0.001 * oid)
            rows["band"].append("ugrizy"[k % 6])
            rows["mag"].append(20 + rng.normal(0, 0.05))
            rows["magerr"].append(0.05)
    return pa.table(rows)


@pytest.mark.parametrize(
    ("spec", "kept_bands", "dropped"),
    [("rubin", {0, 1, 2}, 40), ("u=g,z=i,y=i", {0, 1, 2}, 0)],
)
def test_rubin_ugrizy(spark, tmp_path, spec, kept_bands, dropped):
    from catalogs.band_map import BandMap

    table = _rubin_table()
    path = tmp_path / "rubin.parquet"
    pq.write_table(table, path)
    out = tmp_path / "rubin_lc"
    summary = run_ingest(
        spark, _config("detections", [path], out, band_map=BandMap.parse(spec)),
        log=lambda *_: None,
    )  # fmt: skip
    assert summary.rows_in == 120 == summary.rows_out + summary.rows_rejected
    assert summary.rejected_by_reason.get("band_dropped", 0) == dropped
    df = lsdb.open_catalog(out).compute()
    assert len(df) == 2
    assert set(np.concatenate([lc["band"] for lc in df["lightcurve"]])) == kept_bands
    counts = sorted(int(n) for n in df["n_epochs_i"])
    assert counts == ([20, 20] if dropped else [30, 30])  # i + z, plus y when mapped
