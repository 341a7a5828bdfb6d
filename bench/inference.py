"""Model inference: objects per second standalone versus inside the Spark classify stage.

Same light curves (simulated, all classes), same model (the shipped one), same batch size.
Standalone: `Classifier.predict` on inputs made beforehand (dm-dt images, periodograms,
features), TensorFlow using every core; the inputs are timed separately. Inside Spark: the
classify job's own mapInArrow stage (inputs and network in each Python worker, model loaded once
per worker, TF threads = spark.task.cpus), local[*], timed end to end on a warm run (workers and
model already loaded) and on the cold first run.

    .venv/bin/python bench/inference.py [--objects-per-class 1500] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "models" / "varsky_dmdt_cnn"


def lightcurve_table(n_per_class: int, seed: int) -> pa.Table:
    """Simulated light curves as rows of the classify stage's input."""
    from catalogs.healpix import healpix_29
    from catalogs.schema import LIGHTCURVE_STRUCT
    from udfs.simulators.lightcurve_simulator import simulate_lightcurves

    sim = simulate_lightcurves(n_per_class, seed=seed)
    n = sim.offsets.size - 1
    offsets = pa.array(sim.offsets.astype(np.int32))
    lightcurve = pa.StructArray.from_arrays(
        [
            pa.ListArray.from_arrays(offsets, pa.array(sim.t_hmjd)),
            pa.ListArray.from_arrays(offsets, pa.array(sim.mag.astype(np.float32))),
            pa.ListArray.from_arrays(offsets, pa.array(sim.magerr.astype(np.float32))),
            pa.ListArray.from_arrays(offsets, pa.array(sim.channel.astype(np.int8))),
        ],
        fields=list(LIGHTCURVE_STRUCT),
    )
    rng = np.random.default_rng(seed)
    ra, dec = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    counts = np.diff(sim.offsets).astype(np.int32)
    per_band = [
        np.bincount(np.repeat(np.arange(n), np.diff(sim.offsets))[sim.channel == c], minlength=n)
        for c in range(3)
    ]
    return pa.table(
        {
            "objectid": np.arange(n, dtype=np.int64),
            "ra": ra,
            "dec": dec,
            "_healpix_29": healpix_29(ra, dec),
            "n_good": counts,
            "n_good_g": per_band[0].astype(np.int32),
            "n_good_r": per_band[1].astype(np.int32),
            "n_good_i": per_band[2].astype(np.int32),
            "source_file": ["simulated"] * n,
            "lightcurve": lightcurve,
        }
    )


def standalone(table: pa.Table, batch_size: int, repeats: int) -> dict:
    from udfs.kernels.model_inputs import flat_lightcurves
    from udfs.model.classifier import Classifier, ModelCard, configure_tensorflow_threads

    configure_tensorflow_threads(os.cpu_count() or 1)
    card = ModelCard.read(MODEL_DIR)
    classifier = Classifier.load(MODEL_DIR / "model.keras", card)
    flat = flat_lightcurves(table.column("lightcurve").combine_chunks())
    card.model_inputs(flat_lightcurves(table.column("lightcurve").slice(0, 10)))  # compile
    runs = []
    for _ in range(repeats):
        seconds: dict[str, float] = {}
        inputs = card.model_inputs(flat, seconds)
        runs.append(seconds)
    inputs_s = {k: min(r[k] for r in runs) for k in runs[0]}
    first = {k: v[:batch_size] for k, v in inputs.items()}
    classifier.predict(first, batch_size)  # warm up
    best = min(
        _timed(lambda: classifier.predict(inputs, batch_size=batch_size)) for _ in range(repeats)
    )
    return {"n": flat.n_lightcurves, "predict_s": best, "inputs_s": inputs_s}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def inside_spark(path: Path, n: int, batch_size: int) -> dict:
    from jobs.classify_spark import model_ref
    from jobs.session import build_spark_session
    from udfs.engines.spark_inference import classify_partitions
    from udfs.model.classifier import checked_model
    from udfs.model.inference import output_schema

    spark = build_spark_session(
        "varsky bench inference", conf={"spark.ui.showConsoleProgress": "false"}
    )
    cores = spark.sparkContext.defaultParallelism
    ref, card = model_ref(spark, str(MODEL_DIR), checked_model(MODEL_DIR))
    from pyspark.sql.pandas.types import from_arrow_schema

    df = spark.read.parquet(str(path)).repartition(cores)
    carried = pq.read_schema(path)
    schema = from_arrow_schema(output_schema(card.classes, carried))
    runs = []
    for _ in range(3):  # the first is cold: worker start, imports, model load
        acc = {k: spark.sparkContext.accumulator(0.0) for k in ("load_s", "inputs_s", "predict_s")}
        plan = df.mapInArrow(classify_partitions(ref, batch_size, acc), schema)
        t0 = time.perf_counter()
        plan.write.format("noop").mode("overwrite").save()
        runs.append(
            {
                "wall_s": time.perf_counter() - t0,
                **{k: v.value for k, v in acc.items()},
            }
        )
    spark.stop()
    return {"cores": cores, "cold": runs[0], "warm": min(runs[1:], key=lambda r: r["wall_s"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects-per-class", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()

    table = lightcurve_table(args.objects_per_class, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lightcurves.parquet"
        pq.write_table(table, path)
        spark_result = inside_spark(path, table.num_rows, args.batch_size)
    alone = standalone(table, args.batch_size, args.repeats)
    n = alone["n"]
    rate_alone = n / alone["predict_s"]
    warm, cold = spark_result["warm"], spark_result["cold"]
    print(
        f"\n{n:,} light curves, batch size {args.batch_size}, shipped model, "
        f"{spark_result['cores']} cores"
    )
    print("| where | what is timed | seconds | objects/s | vs standalone |")
    print("|---|---|---:|---:|---:|")
    print(f"| standalone | model.predict, TF on all cores | {alone['predict_s']:.2f} "
          f"| {rate_alone:,.0f} | 1.00 |")  # fmt: skip
    for name, seconds in alone["inputs_s"].items():
        print(f"| standalone | input {name} (numba, all cores) | {seconds:.2f} "
              f"| {n / seconds:,.0f} | |")  # fmt: skip
    both = sum(alone["inputs_s"].values()) + alone["predict_s"]
    print(f"| standalone | all inputs + model.predict | {both:.2f} | {n / both:,.0f} | |")
    for label, r in (("Spark, warm", warm), ("Spark, cold", cold)):
        rate = n / r["wall_s"]
        vs = rate * both / n
        print(f"| {label} | whole stage: Arrow in, inputs, network, Arrow out "
              f"| {r['wall_s']:.2f} | {rate:,.0f} | {vs:.2f} (vs inputs + predict) |")  # fmt: skip
    predict_wall = warm["predict_s"] / spark_result["cores"]
    print(f"| Spark, warm | model.predict inside tasks (task seconds / cores) | {predict_wall:.2f} "
          f"| {n / predict_wall:,.0f} | {n / predict_wall / rate_alone:.2f} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"standalone": alone, "spark": spark_result}))


if __name__ == "__main__":
    main()
