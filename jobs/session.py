"""The one place a SparkSession is built: by the CLI, under spark-submit, and in tests."""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

#: Settings every varsky job wants, on any master.
BASE_CONF: dict[str, str] = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.python.worker.reuse": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    "spark.sql.debug.maxToStringFields": "200",
}

#: Extra settings for in-process local runs (a laptop or a test), where nothing else sets them.
LOCAL_CONF: dict[str, str] = {
    "spark.driver.memory": "4g",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.showConsoleProgress": "true",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}

#: varsky's quiet Spark log configuration (WARN), used unless --verbose; spark-submit.sh too.
LOG4J_CONF = Path(__file__).resolve().parent.parent / "conf" / "log4j2.properties"
LOG4J_OPTION = f"-Dlog4j2.configurationFile={LOG4J_CONF.as_uri()}"


def verbose() -> bool:
    """True when the job was given --verbose (the CLI sets VARSKY_VERBOSE)."""
    return os.environ.get("VARSKY_VERBOSE", "") not in ("", "0")


def launched_by_spark_submit() -> bool:
    """True when this Python driver was started by spark-submit (its JVM is already running)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def default_numba_cache_dir() -> str:
    """Where compiled numba kernels are cached (``NUMBA_CACHE_DIR`` when set)."""
    return os.environ.get("NUMBA_CACHE_DIR") or str(Path.home() / ".cache" / "varsky" / "numba")


def build_spark_session(
    app_name: str,
    master: str | None = None,
    conf: dict[str, str] | None = None,
    log_level: str = "WARN",
):
    """Return a SparkSession configured for varsky, named ``app_name`` in the Spark UI and logs.

    ``master`` (a Spark master URL) is ignored under spark-submit, which has set it already;
    otherwise it is ``local[*]`` when not given. ``conf`` holds extra Spark settings, applied
    last; ``log_level`` is the driver's Spark log level.
    """
    # pyspark 4.3 warns on pandas 3; varsky exchanges Arrow batches, not pandas frames.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    from pyspark.sql import SparkSession

    os.environ.setdefault("NUMBA_CACHE_DIR", default_numba_cache_dir())
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    settings = dict(BASE_CONF)
    if not launched_by_spark_submit():
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.master(master or "local[*]")
        settings.update(LOCAL_CONF)
        if not verbose() and LOG4J_CONF.is_file():
            settings["spark.driver.extraJavaOptions"] = LOG4J_OPTION
    settings["spark.executorEnv.NUMBA_CACHE_DIR"] = os.environ["NUMBA_CACHE_DIR"]
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("INFO" if verbose() else log_level)
    return spark


def run_spark_job(app_name: str, master: str | None, job) -> int:
    """Build the session, run ``job(spark)`` and print the summary it returns.

    ``job`` returns a summary with a ``stage_s`` dict and a ``format()`` method; the session's
    start-up time is reported as its first stage.
    """
    t = time.perf_counter()
    spark = build_spark_session(app_name, master=master)
    startup_s = time.perf_counter() - t
    summary = job(spark)
    summary.stage_s = {"spark start": startup_s, **summary.stage_s}
    print(summary.format(), flush=True)
    return 0
