"""What a user sees: one-line errors with exit status 2, and quiet runs (issue 16).

Every case runs the real `varsky` command (or ./spark-submit.sh) in a fresh process, as a user
would, with none of the Makefile's environment (no SPARK_LOCAL_IP, no TF_CPP_MIN_LOG_LEVEL).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parent.parent
VARSKY = Path(sys.executable).parent / "varsky"
SAMPLE = REPO / "data" / "sample"
QUIET_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("SPARK_LOCAL_IP", "TF_CPP_MIN_LOG_LEVEL", "PYSPARK_PYTHON", "VARSKY_VERBOSE")
}


def _run(argv: list[str], timeout_s: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, capture_output=True, text=True, env=QUIET_ENV, cwd=REPO, timeout=timeout_s
    )


def _one_line_error(argv: list[str], job: str, *expected: str) -> str:
    done = _run([str(VARSKY), *argv])
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"varsky {job}: error: "), lines[0]
    assert "Traceback" not in done.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_input_path_that_does_not_exist():
    _one_line_error(
        ["classify", "--input", "data/samples", "--output", "out"],
        "classify",
        "data/samples: input path does not exist",
    )


def test_existing_output_without_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    _one_line_error(
        ["classify", "--input", str(SAMPLE), "--output", str(tmp_path / "out")],
        "classify",
        "exists; pass --overwrite",
    )


def test_csv_instead_of_parquet(tmp_path):
    csv = tmp_path / "lc.csv"
    csv.write_text("objectid,hmjd,mag\n1,59000.1,17.2\n")
    _one_line_error(
        ["classify", "--input", str(csv), "--output", str(tmp_path / "out")],
        "classify",
        "lc.csv: cannot read as Parquet",
        "IRSA DR light-curve Parquet",
    )


def test_folder_of_fits_catalogs_points_to_ingest(tmp_path):
    psfcat = tmp_path / "sky" / "psfcat"
    psfcat.mkdir(parents=True)
    for n in range(3):
        (psfcat / f"ztf_{n}_psfcat.fits").write_bytes(b"SIMPLE  =                    T")
    _one_line_error(
        ["classify", "--input", str(psfcat), "--output", str(tmp_path / "out")],
        "classify",
        "holds no Parquet file",
        "3 FITS file(s)",
        "varsky ingest --format psfcat",
    )


def test_report_of_something_that_is_not_a_classification():
    _one_line_error(
        ["report", "data/sample"],
        "report",
        "report expects the output of `varsky classify`",
    )


def test_missing_model_file(tmp_path):
    _one_line_error(
        ["classify", "--input", str(SAMPLE), "--output", str(tmp_path / "o"), "--model",
         str(tmp_path)],
        "classify",
        "model.keras is missing",
    )  # fmt: skip


def test_ingest_input_that_does_not_exist(tmp_path):
    _one_line_error(
        ["ingest", "--format", "psfcat", "--input", str(tmp_path / "none"), "--output",
         str(tmp_path / "o")],
        "ingest",
        "input path does not exist",
    )  # fmt: skip


def test_bad_option_value_is_one_line():
    _one_line_error(
        ["classify", "--input", str(SAMPLE), "--output", "o", "--min-epochs", "1"],
        "classify",
        "--min-epochs must be at least 2",
    )


def test_resume_on_dask_is_refused():
    _one_line_error(
        ["classify", "--input", str(SAMPLE), "--output", "o", "--engine", "dask", "--resume"],
        "classify",
        "--resume is for the Spark engine",
    )


def test_debug_shows_the_traceback():
    done = _run([str(VARSKY), "classify", "--input", "data/samples", "--output", "o", "--debug"])
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "input path does not exist" in done.stderr


def test_misspelt_job():
    done = _run([str(VARSKY), "clasify"])
    assert done.returncode == 2 and "invalid choice: 'clasify'" in done.stderr
    done = _run([str(REPO / "spark-submit.sh"), "clasify", "--input", "x"])
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "spark-submit.sh: error: unknown job 'clasify'; "
        "JOB is one of: classify train simulate ingest report"
    )


# --- quiet runs -----------------------------------------------------------------------------
NOISE = re.compile(r"oneDNN|absl::|\bINFO\b|loopback|log4j2-defaults|setLogLevel|NativeCodeLoader")


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory) -> Path:
    """The first 600 rows of the DR5 sample: a whole job in seconds, every stage still run."""
    path = tmp_path_factory.mktemp("small") / "small.parquet"
    pq.write_table(pq.read_table(next(SAMPLE.glob("*.parquet"))).slice(0, 600), path)
    return path


def _quiet(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    text = (done.stdout + done.stderr).replace("\r", "\n")
    noisy = [line for line in text.splitlines() if NOISE.search(line)]
    assert noisy == []
    assert "rows in = out + rejected: 600 = " in done.stdout


def test_classify_prints_progress_and_summary_only(small_sample, tmp_path):
    _quiet(_run([str(VARSKY), "classify", "--input", str(small_sample), "--output",
                 str(tmp_path / "out")]))  # fmt: skip


def test_spark_submit_local_run_is_quiet(small_sample, tmp_path):
    _quiet(_run([str(REPO / "spark-submit.sh"), "classify", "--input", str(small_sample),
                 "--output", str(tmp_path / "out")]))  # fmt: skip


# --- summaries that are true ------------------------------------------------------------------
def test_classify_summary_lists_classes_under_classified_and_says_why_no_margin():
    from catalogs.dr_lightcurves import DRFile
    from jobs.classify_plan import ClassifySummary

    files = [DRFile(f"f{i}.parquet", 10, "double") for i in range(32_310)]
    summary = ClassifySummary(files=files, rows_in=3, rows_out=3, output="out")
    summary.class_counts = {"constant": 2, "rrab": 1}
    summary.tiles = [(0, 8, 3)]
    lines = summary.format().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  classified"))
    assert lines[at + 1].split() == ["constant", "2"] and lines[at + 2].split() == ["rrab", "1"]
    assert "no margin cache (one tile has no neighbours)" in lines[at + 3]
    assert "32,310 file(s)" in summary.format()
    summary.tiles, summary.margin_rows, summary.margin_name = [(1, 1, 2), (1, 2, 1)], 5, "m"
    assert "margin cache m: 5 rows" in summary.format()


def test_ingest_summary_accounts_for_reference_objects_without_detections():
    from jobs.ingest import IngestSummary

    summary = IngestSummary("psfcat", n_files=1_200, rows_in=10, rows_out=10, radius_arcsec=1.5)
    summary.reference_sources, summary.reference_objects, summary.objects_out = 2_028, 500, 485
    text = summary.format()
    assert "2,028 sources merged into 500 sky objects" in text
    assert "485 with good detections within 1.5 arcsec, written; 15 without one" in text
    assert "1,200 psfcat file(s)" in text
