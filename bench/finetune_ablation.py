"""Fine-tuning variants from one pretrained model, scored on the real validation splits.

Starts every variant from the same simulator-pretrained model (``--pretrained``: the model that
`make model` shipped before fine-tuning existed, recovered with
``git show b567343:models/varsky_dmdt_cnn/model.keras`` and its ``model_card.json``), makes the
inputs of the real labelled sets and of a fresh simulation once (numpy, no Spark), and for each
variant fine-tunes a copy and prints the CRTS seven-class recall (Mahabal et al. 2017's classes),
the TDSS quasars' agn recall, the share of CRTS stars called agn and the synthetic validation
macro F1. No calibration here (it is fitted after fine-tuning by `varsky train`).

    git worktree add /tmp/ablation bc1ad73 && ln -s "$PWD/.venv" /tmp/ablation/.venv
    cd /tmp/ablation
    mkdir -p /tmp/pretrained && for f in model.keras model_card.json; do
      git show b567343:models/varsky_dmdt_cnn/$f > /tmp/pretrained/$f; done
    .venv/bin/python bench/finetune_ablation.py --pretrained /tmp/pretrained

The pretrained model of b567343 takes the inputs of its time (14 folded-shape numbers, not
today's 18), so the table in docs/classifier.md was measured, and reruns, at commit bc1ad73.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REAL = REPO / "data" / "real_labelled"
SEVEN = ("EW", "EA", "RRab", "RRc", "RRd", "RS_CVn", "LPV")
#: name -> (periodogram frequency cap, epochs, learning rate, real weight, simulated objects per
#: class in the mix). The README's "2 cadence copies" row was measured with this script at commit
#: 93c83eb, before the unused cadence augmentation was removed.
VARIANTS = {
    "no fine-tuning, cap 20,000": (20_000, 0, 0.0, 1.0, 0),
    "no fine-tuning, cap 150,000": (150_000, 0, 0.0, 1.0, 0),
    "10 epochs, 5e-4, cap 20,000": (20_000, 10, 5e-4, 1.0, 600),
    "10 epochs, 5e-4, cap 150,000": (150_000, 10, 5e-4, 1.0, 600),
    "20 epochs, 1e-3": (150_000, 20, 1e-3, 1.0, 600),
    "20 epochs, 1e-3, real weight 2": (150_000, 20, 1e-3, 2.0, 600),
    "40 epochs, 1e-3": (150_000, 40, 1e-3, 1.0, 600),
    "20 epochs, 1e-3, 1,500 simulated per class (make model)": (150_000, 20, 1e-3, 1.0, 1500),
}


def make_inputs(card, cap: int, sim_per_class: int, min_epochs: int) -> dict:
    """Inputs of the real sets (with their split) and of a simulation, for one frequency cap."""
    from catalogs.band_map import BandMap
    from catalogs.labelled_sets import read_labelled_set
    from jobs.train_config import TrainConfig
    from jobs.training_sets import simulated_lightcurve_table
    from udfs.kernels.model_inputs import flat_lightcurves
    from udfs.kernels.periodogram import PeriodogramGrid
    from udfs.model.training import real_split

    card = replace(card, periodogram=PeriodogramGrid(max_frequencies=cap))
    out = {}
    for name in ("crts_train", "tdss_quasars"):
        table = read_labelled_set(REAL / name, BandMap.parse("crts"))
        table = table.filter(table.column("n_epochs").to_numpy() >= min_epochs)
        lab = np.asarray(table.column("label_orig").to_pylist())
        ids = table.column("objectid").to_numpy()
        split = real_split(ids, [f"{name}/{g}" for g in lab], 0.2, 2026)
        out[name] = {
            "x": card.model_inputs(flat_lightcurves(table.column("lightcurve"))),
            "classes": np.asarray(table.column("classes").to_pylist()),
            "label": lab,
            "split": split,
        }
    config = TrainConfig(output=Path("."), objects_per_class=sim_per_class, seed=5)
    sim, _ = simulated_lightcurve_table(config)
    out["sim"] = {
        "x": card.model_inputs(flat_lightcurves(sim.column("lightcurve"))),
        "classes": np.asarray(sim.column("label").to_pylist()),
    }
    return out


def dr5_lightcurves():
    """The bundled DR5 quadrant's classified light curves, after classify's cuts."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from jobs.classify_plan import DEFAULT_BAD_EXPOSURE_FRACTION, DEFAULT_BAD_EXPOSURE_MIN_STARS
    from reports.report_lightcurves import fetch_lightcurves
    from udfs.kernels.model_inputs import flat_lightcurves

    sample = REPO / "data" / "sample"
    ids = pq.read_table(next(sample.glob("*.parquet")), columns=["objectid"])["objectid"].to_numpy()
    table = fetch_lightcurves(
        ids, [sample], bad_exposure_fraction=DEFAULT_BAD_EXPOSURE_FRACTION,
        bad_exposure_min_stars=DEFAULT_BAD_EXPOSURE_MIN_STARS,
    )  # fmt: skip
    table = table.filter(pc.greater_equal(table.column("n_good"), 20))
    return flat_lightcurves(table.column("lightcurve"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", required=True, help="model directory to start from")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--sim-per-class", type=int, default=3000)
    args = parser.parse_args()

    from udfs.model.classifier import (
        CLASS_NAMES,
        Classifier,
        ModelCard,
        classification_metrics,
        configure_tensorflow_threads,
    )
    from udfs.model.real_validation import labelled_scores
    from udfs.model.training import (
        TRAIN,
        VALIDATION,
        class_weights,
        concat_inputs,
        fit,
        multi_hot_targets,
        sample_weights,
        take,
    )

    configure_tensorflow_threads(os.cpu_count() or 1)
    import keras

    classes = list(CLASS_NAMES)
    card0 = ModelCard.read(args.pretrained)
    dr5 = dr5_lightcurves()
    cache: dict[tuple[int, int], dict] = {}
    rows = []
    for name in args.variants:
        cap, epochs, lr, real_weight, mix_per_class = VARIANTS[name]
        if cap not in cache:
            t0 = time.perf_counter()
            cache[cap] = make_inputs(card0, cap, args.sim_per_class, 20)
            print(f"[inputs] cap {cap}: {time.perf_counter() - t0:.0f} s")
        data = cache[cap]
        model = keras.models.load_model(
            Path(args.pretrained) / "model.keras", safe_mode=True, compile=False
        )
        sim = data["sim"]
        rng = np.random.default_rng(0)
        sim_split = np.where(rng.random(sim["classes"].size) < 0.2, VALIDATION, TRAIN)
        if epochs:
            xs, ys, ws = [], [], []
            for set_name in ("crts_train", "tdss_quasars"):
                d = data[set_name]
                train = d["split"] == TRAIN
                xs.append(take(d["x"], train))
                ys.append(multi_hot_targets(d["classes"][train], classes))
                ws.append(np.full(int(train.sum()), real_weight))
            pick = np.concatenate(
                [
                    np.flatnonzero((sim_split == TRAIN) & (sim["classes"] == c))[:mix_per_class]
                    for c in classes
                ]
            )
            xs.append(take(sim["x"], np.sort(pick)))
            ys.append(multi_hot_targets(sim["classes"][np.sort(pick)], classes))
            ws.append(np.ones(pick.size))
            x, y = concat_inputs(xs), np.concatenate(ys)
            w = sample_weights(y, class_weights(y)) * np.concatenate(ws)
            keras.utils.set_random_seed(1)
            fit(model, x, y, epochs=epochs, learning_rate=lr, batch_size=128, sample_weight=w,
                verbose=0)  # fmt: skip
        card = replace(card0, periodogram=replace(card0.periodogram, max_frequencies=cap))
        clf = Classifier(model, card)
        row = {"variant": name}
        for set_name in ("crts_train", "tdss_quasars"):
            d = data[set_name]
            val = d["split"] == VALIDATION
            p = clf.predict(take(d["x"], val))
            scores = labelled_scores(p, d["classes"][val], d["label"][val], classes)
            if set_name == "crts_train":
                seven = scores["mahabal2017"]["varsky"]
                row["mean7"] = scores["mahabal2017"]["varsky_mean"]
                row.update({k: seven[k] for k in SEVEN})
                row["CRTS called agn"] = float(np.mean(p.argmax(1) == classes.index("agn")))
            else:
                row["TDSS agn recall"] = scores["per_class"]["agn"]["recall"]
        called = np.asarray(classes)[clf.predict(card.model_inputs(dr5)).argmax(1)]
        row["DR5 variable"] = float(np.mean(~np.isin(called, ["constant", "bogus"])))
        val = sim_split == VALIDATION
        p = clf.predict(take(sim["x"], val))
        truth = np.array([classes.index(c) for c in sim["classes"][val]])
        row["synthetic macro F1"] = classification_metrics(truth, p.argmax(1), classes).macro_f1
        rows.append(row)
        print(row, flush=True)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print(
            "| "
            + " | ".join(f"{v:.3f}" if isinstance(v, float) else v for v in row.values())
            + " |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
