"""The Dask engine writes the Spark engine's catalog, byte for byte, on real and simulated skies."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import lsdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hats.io.validation import is_valid_catalog, is_valid_collection
from irsa_layout import write_irsa_hats

from catalogs.input_files import hats_partition_files
from jobs.classify import ClassifyConfig, run_classify
from jobs.classify_dask import run_classify_dask
from jobs.cli import main
from jobs.ingest import IngestConfig, run_ingest
from udfs.model.classifier import ModelCard
from udfs.simulators.sky_simulator import SkyConfig, simulate_sky

NAME = "varsky_classification"
WHEN = "1790000000"  # SOURCE_DATE_EPOCH: both engines stamp the same processing time


def _config(inputs, out: Path, model_dir, engine: str, **kw) -> ClassifyConfig:
    return ClassifyConfig(
        inputs=tuple(str(p) for p in inputs),
        output=str(out),
        rejects=str(out) + "_rejects",
        model_dir=str(model_dir),
        engine=engine,
        **kw,
    )


def _run_both(spark, client, inputs, root: Path, model_dir, **kw):
    """Classify ``inputs`` with each engine; return their summaries and output folders."""
    quiet = lambda *_: None  # noqa: E731
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", WHEN)
        spark_out, dask_out = root / "spark", root / "dask"
        spark_config = _config(inputs, spark_out, model_dir, "spark", **kw)
        dask_config = _config(inputs, dask_out, model_dir, "dask", **kw)
        runs = {
            "spark": run_classify(spark, spark_config, quiet),
            "dask": run_classify_dask(client, dask_config, quiet),
        }
    return runs, {"spark": spark_out, "dask": dask_out}


def read_rows(out: Path) -> pa.Table:
    """Every row of the classification catalog of a classify output collection."""
    return pa.concat_tables(pq.read_table(f) for f in hats_partition_files(str(out / NAME)))


def _data_files(out: Path) -> dict[str, bytes]:
    """Every Parquet file of a collection (catalog and margin), by relative path."""
    return {
        str(f.relative_to(out)): f.read_bytes()
        for f in sorted(out.rglob("*"))
        if f.is_file() and (f.suffix == ".parquet" or f.name.startswith("_"))
    }


def _assert_same_catalog(runs, outs) -> None:
    spark, dask = runs["spark"], runs["dask"]
    assert dask.rows_in == spark.rows_in
    assert dask.rows_out == spark.rows_out > 0
    assert dask.rejected_by_reason == spark.rejected_by_reason
    assert dask.class_counts == spark.class_counts
    assert (dask.exposures_checked, dask.exposures_flagged) == (
        spark.exposures_checked,
        spark.exposures_flagged,
    )
    assert dask.epochs_bad_exposure == spark.epochs_bad_exposure
    assert dask.tiles == spark.tiles
    assert dask.margin_rows == spark.margin_rows
    files = {engine: _data_files(out) for engine, out in outs.items()}
    assert sorted(files["dask"]) == sorted(files["spark"])
    differ = [p for p in files["spark"] if files["spark"][p] != files["dask"][p]]
    assert differ == [], f"files that differ between engines: {differ}"
    for out in outs.values():
        assert is_valid_collection(out, strict=True)
        assert is_valid_catalog(out / NAME, strict=True)
    properties = (outs["dask"] / NAME / "hats.properties").read_text()
    assert "varsky_engine=dask" in properties
    assert "varsky_engine=spark" in (outs["spark"] / NAME / "hats.properties").read_text()
    rejects = {
        engine: pq.read_table(Path(str(out) + "_rejects")).sort_by(
            [("source_file", "ascending"), ("source_row", "ascending")]
        )
        for engine, out in outs.items()
    }
    for column in ("objectid", "source_file", "source_row", "reject_reason"):
        assert rejects["dask"][column].to_pylist() == rejects["spark"][column].to_pylist()


@pytest.fixture(scope="module")
def sample_runs(spark, dask_client, sample_file, model_dir, tmp_path_factory):
    return _run_both(spark, dask_client, [sample_file], tmp_path_factory.mktemp("dr5"), model_dir)


def test_both_engines_write_the_same_dr5_catalog(sample_runs):
    runs, outs = sample_runs
    _assert_same_catalog(runs, outs)
    assert runs["dask"].rows_in == 5449
    assert runs["dask"].exposures_flagged > 0  # the exposure-level cut ran on both
    catalog = lsdb.open_catalog(outs["dask"]).compute()
    assert len(catalog) == runs["dask"].rows_out


def test_both_engines_write_the_same_simulated_sky(spark, dask_client, model_dir, tmp_path):
    """A simulated sky through ingest; small tiles so that the margin cache is written too."""
    sky = tmp_path / "sky"
    simulate_sky(
        SkyConfig(n_objects=300, seed=11, ccds_per_side=1, survey_days=300.0), sky, workers=2
    )
    lightcurves = tmp_path / "lightcurves"
    run_ingest(
        spark,
        IngestConfig(
            input_format="psfcat",
            inputs=(str(sky / "psfcat"),),
            output=str(lightcurves),
            rejects=str(lightcurves) + "_rejects",
            references=(str(sky / "refpsfcat"),),
        ),
        log=lambda *_: None,
    )
    runs, outs = _run_both(
        spark, dask_client, [lightcurves], tmp_path, model_dir, max_rows_per_pixel=60
    )
    _assert_same_catalog(runs, outs)
    assert len(runs["dask"].tiles) > 1
    assert runs["dask"].margin_rows > 0
    assert (outs["dask"] / f"{NAME}_10arcs" / "dataset" / "_metadata").is_file()


def test_lsdb_api_classifies_irsa_hats_lightcurves_lazily(
    spark, dask_client, sample_file, model_dir, tmp_path
):
    """classify_catalog on IRSA's layout gives the engines' rows for the same HATS input."""
    from udfs.engines.lsdb_engine import classify_catalog

    irsa = write_irsa_hats(sample_file, tmp_path / "irsa")

    lazy = classify_catalog(lsdb.open_catalog(irsa))
    assert isinstance(lazy, lsdb.Catalog)
    assert lazy.hc_structure.catalog_info.ra_column == "ra"
    frame = lazy.compute().sort_values("objectid")

    job = run_classify_dask(
        dask_client,
        _config([irsa], tmp_path / "job", model_dir, "dask", bad_exposure_fraction=0.0),
        log=lambda *_: None,
    )
    files = hats_partition_files(str(tmp_path / "job" / NAME))
    expected = pa.concat_tables([pq.read_table(f) for f in files]).sort_by("objectid")
    assert len(frame) == expected.num_rows == job.rows_out > 1000
    assert frame["objectid"].tolist() == expected["objectid"].to_pylist()
    assert frame["predicted_class"].tolist() == expected["predicted_class"].to_pylist()
    p_columns = [c for c in expected.column_names if c.startswith("p_")]
    classes = ModelCard.read(model_dir).output_classes
    assert len(p_columns) == len(classes) + 2 == 23  # 15 + 6 classes, p_variable, p_transient
    for column in p_columns:  # bit-equal probabilities (null where the network did not run)
        got = frame[column].to_numpy(dtype=np.float32, na_value=np.nan)
        want = expected[column].to_numpy(zero_copy_only=False)
        assert np.array_equal(got, want, equal_nan=True)
    assert frame["settled_as_constant"].tolist() == expected["settled_as_constant"].to_pylist()
    assert set(frame["input_catalog"]) == {"ztf_dr5_lc"}


def test_scheduler_needs_the_dask_engine(capsys):
    argv = ["classify", "--input", "x", "--output", "y", "--scheduler", "tcp://127.0.0.1:1"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "varsky classify: error: --scheduler is for --engine dask; Spark takes --master\n"
    )
    with pytest.raises(ValueError, match="--scheduler is for --engine dask"):
        main([*argv, "--debug"])


def _wait_for_workers(client, n: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(client.scheduler_info()["workers"]) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} dask workers did not join in {timeout_s} s")
        time.sleep(0.5)


@pytest.mark.cluster
def test_classify_on_a_real_dask_cluster_equals_spark(sample_runs, sample_file, tmp_path):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, then the CLI against them."""
    from distributed import Client

    dask = Path(sys.executable).parent / "dask"
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "SOURCE_DATE_EPOCH": WHEN}
    logs = [open(tmp_path / f"{name}.log", "w") for name in ("scheduler", "w1", "w2")]  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [
                str(dask),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                ":0",
                "--scheduler-file",
                str(scheduler_file),
            ],
            stdout=logs[0],
            stderr=subprocess.STDOUT,
            env=env,
        )  # fmt: skip
    ]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline, (tmp_path / "scheduler.log").read_text()
            time.sleep(0.2)
        for log in logs[1:]:
            procs.append(
                subprocess.Popen(
                    [
                        str(dask),
                        "worker",
                        "--scheduler-file",
                        str(scheduler_file),
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--host",
                        "127.0.0.1",
                        "--no-dashboard",
                        "--local-directory",
                        str(tmp_path / "workers"),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )  # fmt: skip
            )
        with Client(scheduler_file=str(scheduler_file)) as client:
            _wait_for_workers(client, 2)
            address = client.scheduler.address
        out = tmp_path / "classified"
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SOURCE_DATE_EPOCH", WHEN)
            argv = ["classify", "--engine", "dask", "--scheduler", address]
            argv += ["--input", str(sample_file), "--output", str(out)]
            assert main(argv) == 0
        _, outs = sample_runs
        expected = _data_files(outs["spark"])
        got = _data_files(out)
        assert sorted(got) == sorted(expected)
        assert [p for p in got if got[p] != expected[p]] == []
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()
