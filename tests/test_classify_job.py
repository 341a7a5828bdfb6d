"""The classify job end to end on the real DR5 sample and model, locally and on a cluster."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from irsa_layout import write_irsa_hats

from catalogs.errors import InputError
from catalogs.healpix import healpix_29
from catalogs.input_files import hats_partition_files
from catalogs.provenance import VARSKY_VERSION, file_sha256
from catalogs.schema import CLASS_NAMES, TRANSIENT_CLASS_NAMES
from jobs.classify import ClassifyConfig, run_classify
from jobs.cli import build_parser, main
from udfs.model.classifier import ModelCard

REPO = Path(__file__).resolve().parent.parent


def read_classification(out: Path) -> pa.Table:
    """Every row of the classification catalog in a classify output collection."""
    files = hats_partition_files(str(out / "varsky_classification"))
    return pa.concat_tables([pq.read_table(f) for f in files])


def _config(inputs, out: Path, model_dir, **kw) -> ClassifyConfig:
    return ClassifyConfig(
        inputs=tuple(str(p) for p in inputs),
        output=str(out),
        rejects=str(out) + "_rejects",
        model_dir=str(model_dir),
        **kw,
    )


def _good_objects(sample_file, min_epochs=20) -> set[int]:
    """Objects with enough catflags == 0 finite epochs, computed here without varsky's code."""
    table = pq.read_table(sample_file).to_pydict()
    keep = set()
    for oid, flags, mags in zip(table["objectid"], table["catflags"], table["mag"], strict=True):
        good = sum(1 for f, m in zip(flags, mags, strict=True) if f == 0 and np.isfinite(m))
        if good >= min_epochs:
            keep.add(oid)
    return keep


@pytest.fixture(scope="module")
def local_run(spark, sample_file, model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "classified"
    summary = run_classify(spark, _config([sample_file], out, model_dir), log=lambda *_: None)
    return summary, out, read_classification(out)


def test_every_good_object_is_classified_exactly_once(local_run, sample_file):
    summary, out, table = local_run
    ids = table.column("objectid").to_pylist()
    assert len(ids) == len(set(ids))
    assert set(ids) == _good_objects(sample_file)
    assert summary.rows_out == len(ids) == 1363


def test_the_rest_is_in_the_rejects_with_a_reason(local_run, sample_file):
    summary, out, table = local_run
    rejects = pq.read_table(str(out) + "_rejects")
    all_ids = set(pq.read_table(sample_file, columns=["objectid"]).column(0).to_pylist())
    reject_ids = rejects.column("objectid").to_pylist()
    assert set(reject_ids) == all_ids - set(table.column("objectid").to_pylist())
    assert rejects.column("reject_reason").null_count == 0
    assert set(rejects.column("reject_reason").to_pylist()) == {"too_few_good_epochs"}
    assert rejects.column("source_file").to_pylist()[0].endswith(sample_file.name)
    assert summary.rows_in == 5449 == summary.rows_out + summary.rows_rejected
    assert summary.epochs_flagged == 8422  # catflags != 0 in the sample
    # Bad exposures lose their epochs; no object is lost for it.
    assert 10 <= summary.exposures_flagged <= 40 and summary.exposures_checked >= 80
    assert summary.epochs_bad_exposure > 5000
    assert summary.epochs_used == 84_360 - summary.epochs_bad_exposure
    assert "exposures flagged bad" in summary.format()


def calm_has_no_transient(table) -> bool:
    """Objects the first stage settled never met the transient head."""
    settled = table.filter(table.column("settled_as_constant"))
    return settled.column("p_transient").null_count == settled.num_rows


def test_output_schema_probabilities_and_provenance(local_run, model_dir):
    _, _, table = local_run
    schema = table.schema
    assert schema.field("objectid").type == pa.int64()
    assert schema.field("_healpix_29").type == pa.int64()
    assert schema.field("ra").type == pa.float64()
    for c in CLASS_NAMES:
        assert schema.field(f"p_{c}").type == pa.float32()
    assert schema.field("p_variable").type == pa.float32()
    assert schema.field("settled_as_constant").type == pa.bool_()
    settled = table.column("settled_as_constant").to_numpy(zero_copy_only=False)
    assert 0.5 * table.num_rows < settled.sum() < table.num_rows
    net = table.filter(pa.array(~settled))
    classes = ModelCard.read(model_dir).output_classes
    assert classes[: len(CLASS_NAMES)] == CLASS_NAMES
    probs = np.column_stack([net.column(f"p_{c}").to_numpy() for c in classes])
    assert np.all((probs >= 0) & (probs <= 1))
    # A variability class unless the transient head says transient (then one of its classes).
    p_transient = net.column("p_transient").to_numpy()
    assert calm_has_no_transient(table) and np.all((p_transient >= 0) & (p_transient <= 1))
    called = np.asarray(net.column("predicted_class").to_pylist())
    variable = p_transient < 0.5
    best = np.asarray(CLASS_NAMES)[probs[:, : len(CLASS_NAMES)].argmax(axis=1)]
    assert called[variable].tolist() == best[variable].tolist()
    assert set(called[~variable]) <= {*TRANSIENT_CLASS_NAMES, "cv"}
    score = probs[np.arange(net.num_rows), [classes.index(c) for c in called]]
    np.testing.assert_array_equal(net.column("predicted_score").to_numpy(), score)
    calm = table.filter(pa.array(settled))
    assert set(calm.column("predicted_class").to_pylist()) == {"constant"}
    np.testing.assert_allclose(
        calm.column("predicted_score").to_numpy(), 1 - calm.column("p_variable").to_numpy()
    )
    assert calm.column("p_rrab").null_count == calm.num_rows
    assert set(table.column("varsky_version").to_pylist()) == {VARSKY_VERSION}
    sha = file_sha256(model_dir / "model.keras")
    assert set(table.column("model_sha256").to_pylist()) == {sha}
    assert set(table.column("dmdt_grid").to_pylist()) == {"mahabal2017"}
    assert set(table.column("model_name").to_pylist()) == {"varsky_dmdt_cnn"}
    assert set(table.column("input_file").to_pylist()) == {"ztf_000250_zg_c01_q1_dr5.parquet"}
    assert set(table.column("input_catalog").to_pylist()) == {"ZTF DR5"}
    assert schema.field("processing_time_utc").type == pa.timestamp("us", tz="UTC")
    assert len(table.column("processing_time_utc").unique()) == 1
    hp = healpix_29(table.column("ra").to_numpy(), table.column("dec").to_numpy())
    np.testing.assert_array_equal(table.column("_healpix_29").to_numpy(), hp)
    assert table.column("n_good_g").to_numpy().min() >= 20
    assert pc.sum(table.column("n_good_r")).as_py() == 0


def test_no_spark_sidecar_files(local_run):
    _, out, _ = local_run
    for d in (out, Path(str(out) + "_rejects")):
        names = [p.name for p in d.rglob("*") if p.is_file()]
        assert names and not [n for n in names if n.endswith(".crc") or n.startswith("_SUCC")]
    rejects = [p.name for p in Path(str(out) + "_rejects").rglob("*") if p.is_file()]
    assert all(n.endswith(".parquet") for n in rejects), rejects


def test_bad_rows_are_rejected_and_counts_add_up(spark, sample_file, model_dir, tmp_path):
    table = pq.read_table(sample_file).slice(0, 300)
    rows = table.to_pylist()
    good = [r for r in rows if sum(f == 0 for f in r["catflags"]) >= 20]
    bad_lengths, bad_mags = dict(good[0]), dict(good[1])
    bad_lengths["mag"] = bad_lengths["mag"][:-1]
    bad_mags["mag"] = [float("nan")] * 10 + [float("inf")] * 5 + bad_mags["mag"][15:]
    bad_mags["catflags"] = [0] * len(bad_mags["mag"])
    # IRSA's own files store hmjd as float64 (the sample has float32): both must work.
    schema = table.schema.set(
        table.schema.get_field_index("hmjd"), pa.field("hmjd", pa.list_(pa.float64()))
    )
    edited = pa.Table.from_pylist([bad_lengths, bad_mags] + rows[2:], schema=schema)
    path = tmp_path / "edited.parquet"
    pq.write_table(edited, path)
    out = tmp_path / "out"
    summary = run_classify(spark, _config([path], out, model_dir), log=lambda *_: None)
    rejects = pq.read_table(str(out) + "_rejects").to_pylist()
    by_id = {r["objectid"]: r for r in rejects}
    assert by_id[bad_lengths["objectid"]]["reject_reason"] == "array_length_mismatch"
    assert by_id[bad_lengths["objectid"]]["source_row"] == 0
    assert summary.epochs_nonfinite == 15
    assert summary.rows_in == 300 == summary.rows_out + summary.rows_rejected


def test_missing_column_fails_before_spark_work(spark, sample_file, model_dir, tmp_path):
    path = tmp_path / "no_catflags.parquet"
    pq.write_table(pq.read_table(sample_file).drop_columns(["catflags"]), path)
    with pytest.raises(InputError, match=r"no_catflags\.parquet, column 'catflags'"):
        run_classify(spark, _config([path], tmp_path / "o", model_dir))


def test_existing_output_needs_overwrite(spark, sample_file, model_dir, tmp_path):
    (tmp_path / "o").mkdir()
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        run_classify(spark, _config([sample_file], tmp_path / "o", model_dir))


def test_grid_must_match_the_model(spark, sample_file, model_dir, tmp_path):
    with pytest.raises(ValueError, match="was trained on grid 'mahabal2017'"):
        run_classify(spark, _config([sample_file], tmp_path / "o", model_dir, grid="scope"))


def test_irsa_hats_input_gives_the_dr_files_classes(spark, sample_file, model_dir, tmp_path):
    """IRSA's DR light curves in HATS layout (written by lsdb, as IRSA's are) classify directly."""
    write_irsa_hats(sample_file, tmp_path / "irsa")
    # HATS input has no exposure keys, so the DR run goes without the exposure-level cut too.
    runs = {
        name: run_classify(
            spark,
            _config([path], tmp_path / name, model_dir, bad_exposure_fraction=0.0),
            log=lambda *_: None,
        )
        for name, path in (("hats", tmp_path / "irsa" / "ztf_dr5_lc"), ("dr", sample_file))
    }
    assert runs["hats"].rows_in == runs["dr"].rows_in == 5449
    assert runs["hats"].rejected_by_reason == runs["dr"].rejected_by_reason
    hats, dr = (read_classification(tmp_path / name).sort_by("objectid") for name in ("hats", "dr"))
    assert hats.num_rows == dr.num_rows > 1000
    assert hats["objectid"].equals(dr["objectid"])
    assert hats["predicted_class"].equals(dr["predicted_class"])
    assert set(hats["input_catalog"].to_pylist()) == {"ztf_dr5_lc"}


def test_cli_help_lists_the_jobs(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "classify" in capsys.readouterr().out
    args = build_parser().parse_args(["classify", "--input", "a", "b", "--output", "o"])
    assert args.input == ["a", "b"] and args.min_epochs == 20


# spark-submit on a standalone cluster, with other partitions, gives the local run's bytes:
# tests/test_faults.py::test_spark_worker_killed_mid_classify checks it, a worker lost on the way.


def test_sky_ranges_balance_a_dense_patch_of_sky(spark):
    """Objects packed into one coarse tile still spread evenly over the partitions."""
    from jobs.classify_spark import sky_ranges

    rng = np.random.default_rng(3)
    ra, dec = 150 + rng.uniform(0, 0.2, 10_000), 20 + rng.uniform(0, 0.2, 10_000)
    df = spark.createDataFrame(
        pa.table({"_healpix_29": healpix_29(ra, dec), "objectid": np.arange(10_000)}).to_pandas()
    )
    parts = sky_ranges(df, 4).rdd.glom().map(lambda rows: [r[0] for r in rows]).collect()
    assert sorted(len(p) for p in parts)[0] >= 2_000 and sum(len(p) for p in parts) == 10_000
    assert all(p == sorted(p) for p in parts)  # sorted within each range
    bounds = sorted((min(p), max(p)) for p in parts)
    # Disjoint sky ranges.
    assert all(a[1] < b[0] for a, b in zip(bounds[:-1], bounds[1:], strict=True))


def test_summary_says_how_busy_the_cores_were(local_run):
    summary, _, _ = local_run
    assert summary.cores >= 1 and 0 < summary.cores_busy <= 1.5
    assert "cores busy" in summary.format()


def test_variability_stage_is_on_by_default_and_recorded(local_run, model_dir):
    summary, out, table = local_run
    card = ModelCard.read(model_dir)
    settled = int(pc.sum(table.column("settled_as_constant")).as_py())
    assert summary.settled == settled > 0.5 * summary.rows_out
    line = summary.first_stage_line()
    assert line.startswith(f"first stage {settled:,} of {summary.rows_out:,} objects settled")
    assert line in summary.format()
    properties = (out / "varsky_classification" / "hats.properties").read_text()
    recorded = json.loads(
        next(
            v
            for k, v in (x.split("=", 1) for x in properties.splitlines() if "=" in x)
            if k.strip() == "varsky_variability_stage"
        )  # fmt: skip
    )
    assert recorded["settles"] is True
    assert recorded["threshold"] == card.variability.threshold
    assert recorded["sha256"] == card.variability.sha256
    assert recorded["calibration"]["noise_model"]["name"] == "realistic"
    assert '"variability_stage": true' in properties


def test_variability_stage_off_gives_the_networks_own_probabilities(
    spark, sample_file, model_dir, local_run, tmp_path
):
    """--variability-stage off: every object goes to the network; the rest is unchanged."""
    _, _, on = local_run
    out = tmp_path / "off"
    summary = run_classify(
        spark, _config([sample_file], out, model_dir, variability_stage=False), log=lambda *_: None
    )
    off = read_classification(out).sort_by("objectid")
    on = on.sort_by("objectid")
    assert off.column("objectid").to_pylist() == on.column("objectid").to_pylist()
    assert summary.settled == 0 and "first stage off" in summary.format()
    assert not pc.any(off.column("settled_as_constant")).as_py()
    for c in CLASS_NAMES:
        assert off.column(f"p_{c}").null_count == 0
    np.testing.assert_array_equal(
        off.column("p_variable").to_numpy(), on.column("p_variable").to_numpy()
    )
    # Objects the stage did not settle got exactly the same probabilities with it on.
    network = ~on.column("settled_as_constant").to_numpy(zero_copy_only=False)
    for c in CLASS_NAMES:
        np.testing.assert_array_equal(
            off.column(f"p_{c}").to_numpy()[network], on.column(f"p_{c}").to_numpy()[network]
        )


def write_twin_sky(sample_file, path: Path, seed: int = 5) -> int:
    """The DR5 sample with every light curve replaced by its realistic noise-only twin."""
    from udfs.simulators.noise_twins import REALISTIC

    table = pq.read_table(sample_file)
    rng = np.random.default_rng(seed)
    mags = []
    for mag, err, flags in zip(
        table["mag"].to_pylist(), table["magerr"].to_pylist(), table["catflags"].to_pylist(),
        strict=True,
    ):  # fmt: skip
        mag, err = np.asarray(mag, np.float64), np.asarray(err, np.float64)
        good = (np.asarray(flags) == 0) & np.isfinite(mag)
        level = np.median(mag[good]) if good.any() else 15.0
        z = rng.standard_normal(mag.size) * rng.uniform(*REALISTIC.error_scale)
        wing = rng.random(mag.size) < REALISTIC.wing_fraction
        z[wing] = rng.choice([-1.0, 1.0], wing.sum()) * rng.uniform(3, 5, wing.sum())
        mags.append((level + z * err).astype(np.float32))
    column = pa.array(mags, table.schema.field("mag").type)
    pq.write_table(table.set_column(table.schema.get_field_index("mag"), "mag", column), path)
    return table.num_rows


def test_a_sky_of_noise_only_twins_is_called_constant(spark, sample_file, model_dir, tmp_path):
    sky = tmp_path / "twins" / "twin_sky.parquet"
    sky.parent.mkdir()
    n = write_twin_sky(sample_file, sky)
    out = tmp_path / "twins_out"
    summary = run_classify(spark, _config([sky], out, model_dir), log=lambda *_: None)
    assert summary.rows_in == n == summary.rows_out + summary.rows_rejected
    classes = read_classification(out).column("predicted_class").to_pylist()
    assert len(classes) == summary.rows_out > 1000
    assert np.mean(np.asarray(classes) == "constant") >= 0.95
    assert summary.settled >= 0.8 * summary.rows_out
