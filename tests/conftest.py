"""Shared fixtures: one local[2] SparkSession for the whole run, the real sample, the model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO / "data" / "sample"
SAMPLE_FILE = SAMPLE_DIR / "ztf_000250_zg_c01_q1_dr5.parquet"
MODEL_DIR = REPO / "models" / "varsky_dmdt_cnn"

os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark():
    from jobs.session import build_spark_session

    session = build_spark_session(
        "varsky tests",
        master="local[2]",
        conf={
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.shuffle.partitions": "4",
            "spark.driver.memory": "2g",
        },
        log_level="ERROR",
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def sample_file() -> Path:
    return SAMPLE_FILE


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return MODEL_DIR


@pytest.fixture(scope="session")
def dask_client():
    """A local Dask cluster like `--engine dask` starts: one single-threaded worker per core."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", host="127.0.0.1"
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()
