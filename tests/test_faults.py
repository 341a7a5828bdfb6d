"""Faults on real processes: a worker or the driver killed mid-run (SIGKILL).

The catalog of a disturbed run must equal an undisturbed run's byte for byte, and a run whose
driver dies must leave nothing that looks like a catalog under the output's name. Marked
``cluster`` (they start clusters and take about a minute each): ``pytest -m cluster``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from standalone_cluster import StandaloneCluster
from test_dask_engine import WHEN, _data_files, _wait_for_workers

from catalogs.hats_writer import partition_relative_path
from catalogs.parquet_output import STAGING_SUFFIX
from catalogs.resume import JOURNAL_DIR
from jobs.classify import ClassifyConfig, run_classify

REPO = Path(__file__).resolve().parent.parent
VARSKY = Path(sys.executable).parent / "varsky"
ENV = {**os.environ, "SOURCE_DATE_EPOCH": WHEN, "PYTHONUNBUFFERED": "1"}


class Job:
    """A command whose output lines are collected as they come; wait for one with ``until``."""

    def __init__(self, argv: list[str], **kw):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
            start_new_session=True, **kw,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def until(self, text: str, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            if self.proc.poll() is not None and not self._reader.is_alive():
                raise AssertionError(f"exited before {text!r}:\n{''.join(self.lines)[-3000:]}")
            assert time.monotonic() < deadline, f"no {text!r} in {timeout_s} s"
            time.sleep(0.2)

    def wait(self, timeout_s: float = 600.0) -> int:
        code = self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=10)
        return code

    def text(self) -> str:
        return "".join(self.lines)


def _classify_locally(spark, sample_file, model_dir, out: Path, log=lambda *_: None, **options):
    """The DR5 sample classified in-process with a fixed processing time; its summary.

    Also the rerun after a killed job: the kill needs a process of its own, the rerun does not.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", WHEN)
        config = ClassifyConfig(
            inputs=(str(sample_file),), output=str(out), rejects=str(out) + "_rejects",
            model_dir=str(model_dir), **options,
        )  # fmt: skip
        return run_classify(spark, config, log=log)


@pytest.fixture(scope="module")
def undisturbed(spark, sample_file, model_dir, tmp_path_factory):
    """The DR5 sample classified locally, with a fixed processing time."""
    out = tmp_path_factory.mktemp("undisturbed") / "classified"
    _classify_locally(spark, sample_file, model_dir, out)
    return _data_files(out)


def _assert_same_files(out: Path, expected: dict[str, bytes]) -> None:
    got = _data_files(out)
    assert sorted(got) == sorted(expected)
    assert [p for p in got if got[p] != expected[p]] == []


@pytest.mark.cluster
def test_spark_worker_killed_mid_classify(undisturbed, sample_file, tmp_path):
    """spark-submit on a standalone cluster, other partitions, a worker lost: the local bytes."""
    out = tmp_path / "classified"
    cluster = StandaloneCluster(tmp_path / "cluster", n_workers=2)
    with cluster as master_url:
        job = Job(
            [str(REPO / "spark-submit.sh"), "--master", master_url, "--executor-memory", "1g",
             "--conf", "spark.ui.enabled=false", "classify", "--input", str(sample_file),
             "--output", str(out), "--rows-per-partition", "200"],
            cwd=tmp_path,
        )  # fmt: skip
        job.until("rows:")  # the cuts are done; the inputs + network stage starts
        time.sleep(4)
        worker = cluster.procs[2]  # master, worker0, worker1
        assert job.proc.poll() is None
        os.killpg(worker.pid, signal.SIGKILL)  # the worker, its executor and Python workers
        assert job.wait() == 0, job.text()[-5000:]
    assert "Lost executor" in job.text()  # the driver saw it go
    assert worker.poll() is not None
    assert "classified  1,363 objects" in job.text()
    _assert_same_files(out, undisturbed)


@pytest.mark.cluster
def test_dask_worker_killed_mid_classify(undisturbed, sample_file, tmp_path):
    from distributed import Client

    dask = Path(sys.executable).parent / "dask"
    scheduler_file = tmp_path / "scheduler.json"

    def start(*args):
        return subprocess.Popen(
            [str(dask), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
            start_new_session=True,
        )  # fmt: skip

    procs = [start("scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
                   ":0", "--scheduler-file", str(scheduler_file))]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        for _ in range(2):
            procs.append(start("worker", "--scheduler-file", str(scheduler_file), "--nthreads",
                               "1", "--host", "127.0.0.1", "--no-dashboard"))  # fmt: skip
        with Client(scheduler_file=str(scheduler_file)) as client:
            _wait_for_workers(client, 2)
            address = client.scheduler.address
        out = tmp_path / "classified"
        job = Job(
            [str(VARSKY), "classify", "--engine", "dask", "--scheduler", address, "--input",
             str(sample_file), "--output", str(out), "--rows-per-partition", "200"],
        )  # fmt: skip
        job.until("inputs + network: ")  # some chunks classified, most still to go
        assert job.proc.poll() is None
        os.killpg(procs[2].pid, signal.SIGKILL)  # a worker and its nanny: gone for good
        assert job.wait() == 0, job.text()[-5000:]
        assert "classified  1,363 objects" in job.text()
        _assert_same_files(out, undisturbed)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.cluster
def test_driver_killed_while_writing_leaves_no_catalog_and_a_rerun_completes(
    spark, undisturbed, sample_file, model_dir, tmp_path
):
    import lsdb

    out = tmp_path / "classified"
    staging = Path(str(out) + STAGING_SUFFIX)
    argv = [str(VARSKY), "classify", "--input", str(sample_file), "--output", str(out)]
    job = Job(argv)
    deadline = time.monotonic() + 300
    while not (staging / "varsky_classification" / "dataset").exists():  # writing the tiles
        assert job.proc.poll() is None, job.text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(job.proc.pid, signal.SIGKILL)  # the driver and its JVM
    job.wait()
    _wait_until_unchanged(staging, quiet_s=3.0, timeout_s=60.0)  # see the test below
    assert not out.exists()
    with pytest.raises(Exception):  # noqa: B017 - whatever lsdb raises, it must not open
        lsdb.open_catalog(out)
    _classify_locally(spark, sample_file, model_dir, out)  # the rerun
    assert not staging.exists()
    _assert_same_files(out, undisturbed)


TILED = 150  # --max-rows-per-pixel: the sample's 1,363 objects in about a dozen tiles


@pytest.fixture(scope="module")
def undisturbed_tiled(spark, sample_file, model_dir, tmp_path_factory):
    """The DR5 sample in small tiles (so with a margin cache), with a fixed processing time."""
    out = tmp_path_factory.mktemp("undisturbed_tiled") / "classified"
    summary = _classify_locally(spark, sample_file, model_dir, out, max_rows_per_pixel=TILED)
    assert len(summary.tiles) > 5 and summary.margin_rows > 0
    return _data_files(out)


@pytest.mark.cluster
def test_driver_killed_while_writing_then_resume_keeps_verified_tiles(
    spark, undisturbed_tiled, sample_file, model_dir, tmp_path
):
    out = tmp_path / "classified"
    staging = Path(str(out) + STAGING_SUFFIX)
    records = staging / JOURNAL_DIR / "tiles"
    argv = [
        str(VARSKY), "classify", "--input", str(sample_file), "--output", str(out),
        "--max-rows-per-pixel", str(TILED),
    ]  # fmt: skip
    job = Job(argv)
    deadline = time.monotonic() + 300
    while not any(records.glob("*.json")):  # a first tile written and recorded
        assert job.proc.poll() is None, job.text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(job.proc.pid, signal.SIGKILL)
    job.wait()
    # PySpark's Python daemon has its own process group: a worker of the dead driver may still
    # close a tile and record it until the daemon sees the JVM gone. Wait for the journal to settle.
    _wait_until_unchanged(records, quiet_s=3.0, timeout_s=60.0)
    assert not out.exists()
    dataset = staging / "varsky_classification" / "dataset"
    recorded = {}
    for record in sorted(records.glob("*.json")):
        r = json.loads(record.read_text())
        recorded[dataset / partition_relative_path(r["order"], r["pixel"])] = r
    assert recorded and all(path.is_file() for path in recorded)
    # One recorded tile damaged after its record: it must not be kept.
    damaged = sorted(recorded)[0]
    with damaged.open("ab") as f:
        f.write(b"\0")
    kept = {p: p.stat().st_ino for p in sorted(recorded)[1:]}

    summary = _classify_locally(
        spark, sample_file, model_dir, out, max_rows_per_pixel=TILED, resume=True
    )
    text = summary.format()
    assert f"kept {len(kept)} tile(s)" in text, text
    assert not staging.exists()
    for path, inode in kept.items():  # kept in place, not rewritten
        assert (out / path.relative_to(staging)).stat().st_ino == inode
    assert not (out / JOURNAL_DIR).exists()
    _assert_same_files(out, undisturbed_tiled)


def _wait_until_unchanged(folder: Path, quiet_s: float, timeout_s: float) -> None:
    """Return once the files under ``folder`` have not changed for ``quiet_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    seen, since = None, time.monotonic()
    while time.monotonic() - since < quiet_s:
        try:
            now = sorted((str(p), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
        except FileNotFoundError:  # removed while listed: still changing
            now = None
        if now is None or now != seen:
            seen, since = now, time.monotonic()
        assert time.monotonic() < deadline, f"{folder} still changing after {timeout_s} s"
        time.sleep(0.1)


def test_resume_without_a_journal_starts_afresh(
    spark, undisturbed, sample_file, model_dir, tmp_path
):
    out = tmp_path / "classified"
    staging = Path(str(out) + STAGING_SUFFIX)
    (staging / "varsky_classification" / "dataset").mkdir(parents=True)
    (staging / "varsky_classification" / "dataset" / "junk.parquet").write_bytes(b"not parquet")
    said: list[str] = []
    summary = _classify_locally(spark, sample_file, model_dir, out, said.append, resume=True)
    assert any("no journal of this job" in line for line in said), said
    assert "kept " not in summary.format()
    _assert_same_files(out, undisturbed)


@pytest.mark.cluster
def test_spark_worker_killed_mid_ingest(spark, sample_file, tmp_path):
    """Ingest on a standalone cluster losing a worker gives the bytes of an in-process ingest."""
    from jobs.ingest import IngestConfig, run_ingest

    local = tmp_path / "undisturbed"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", WHEN)
        config = IngestConfig(input_format="dr-parquet", inputs=(str(sample_file),),
                              output=str(local), rejects=str(local) + "_rejects")  # fmt: skip
        run_ingest(spark, config, log=lambda *_: None)
    out = tmp_path / "disturbed"
    cluster = StandaloneCluster(tmp_path / "cluster", n_workers=2)
    with cluster as master_url:
        job = Job(
            [str(REPO / "spark-submit.sh"), "--master", master_url, "--executor-memory", "1g",
             "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=8",
             "ingest", "--format", "dr-parquet", "--input", str(sample_file),
             "--output", str(out)],
            cwd=tmp_path,
        )  # fmt: skip
        job.until("varsky ingest:")  # inputs checked; the Spark work starts
        time.sleep(3)
        assert job.proc.poll() is None
        os.killpg(cluster.procs[2].pid, signal.SIGKILL)
        assert job.wait() == 0, job.text()[-5000:]
    assert "Lost executor" in job.text()
    expected, got = _data_files(local), _data_files(out)
    assert sorted(got) == sorted(expected)
    assert [p for p in got if got[p] != expected[p]] == []
