"""What each part of the network adds: train variants on the same simulated data, compare metrics.

Variants (all with the same data, split, seed and training settings as `make model`, smaller):
the dm-dt CNN alone (Mahabal et al. 2017), + binned periodogram (and folded shape), + summary
features, all inputs, and all inputs without band dropout. Prints validation loss, test accuracy
and macro F1 per variant, and the per-class F1 of each.

    .venv/bin/python bench/model_ablation.py [--objects-per-class 1500] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

VARIANTS = {
    "dm-dt CNN only": {"periodogram": False, "features": False},
    "+ periodogram": {"periodogram": True, "features": False},
    "+ features": {"periodogram": False, "features": True},
    "all inputs": {},
    "all inputs, no band dropout": {"band_dropout": 0.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects-per-class", type=int, default=1500)
    parser.add_argument("--json")
    args = parser.parse_args()

    from jobs.session import build_spark_session
    from jobs.train import TrainConfig, train

    spark = build_spark_session(
        "varsky bench ablation", conf={"spark.ui.showConsoleProgress": "false"}, log_level="ERROR"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = TrainConfig(output=Path(tmp), objects_per_class=args.objects_per_class)
        for name, changes in VARIANTS.items():
            config = replace(base, output=Path(tmp) / name.replace(" ", "_"), **changes)
            t0 = time.perf_counter()
            result = train(spark, config, log=lambda line: None)
            metrics = result.card.test_metrics
            results[name] = {
                "best_val_loss": result.best_val_loss,
                "test_accuracy": metrics.accuracy,
                "test_macro_f1": metrics.macro_f1,
                "per_class_f1": {k: v.f1 for k, v in metrics.per_class.items()},
                "seconds": time.perf_counter() - t0,
            }
            print(f"{name}: macro F1 {metrics.macro_f1:.3f}", flush=True)
    spark.stop()

    n = args.objects_per_class
    print(f"\n{n} simulated light curves per class ({int(n * 0.15)} per class in the test split)")
    print("| network inputs | best val. loss | test accuracy | test macro F1 |")
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['best_val_loss']:.4f} | {r['test_accuracy']:.3f} "
              f"| {r['test_macro_f1']:.3f} |")  # fmt: skip
    classes = list(next(iter(results.values()))["per_class_f1"])
    print("\n| class | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    for c in classes:
        print(
            f"| {c} | " + " | ".join(f"{r['per_class_f1'][c]:.2f}" for r in results.values()) + " |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
