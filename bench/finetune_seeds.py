"""Fine-tuning seed spread and a seed ensemble, on the real validation split.

Runs ``make model``'s training once (``varsky train`` with the bundled real sets, into
``--workdir``), keeping the simulator-pretrained network and the fine-tuning inputs; then
fine-tunes ``--seeds`` members from that pretrained network, each with its own shuffling, and
prints the CRTS seven-class recall (Mahabal et al. 2017's classes), the share of CRTS stars called
agn and the TDSS agn recall for each member and for the mean of the first k members'
probabilities. Uncalibrated (the calibration is fitted after fine-tuning). About 45 minutes on
2 cores.

    .venv/bin/python bench/finetune_seeds.py [--seeds 5] [--workdir /tmp/varsky_seeds]
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SEVEN = ("EW", "EA", "RRab", "RRc", "RRd", "RS_CVn", "LPV")


def dump_training(workdir: Path) -> None:
    """``make model``'s training, keeping what fine-tuning starts from (wrapped, not changed)."""
    import udfs.model.real_validation as rv
    import udfs.model.training as training
    from jobs.cli import main

    finetune, calibrate, scores = training.finetune, training.calibrate, rv.labelled_scores
    kept: dict = {"groups": []}

    def keep_finetune(model, *args, **kw):
        model.save(workdir / "pretrained.keras")
        kept["finetune"] = (args, kw)
        return finetune(model, *args, **kw)

    def keep_calibrate(model, predict, r_arrays, r_targets, r_val, *args, **kw):
        kept["r_val"] = r_val
        return calibrate(model, predict, r_arrays, r_targets, r_val, *args, **kw)

    def keep_scores(p, labels, group, classes):
        kept["groups"].append((list(labels), np.asarray(group), list(classes)))
        return scores(p, labels, group, classes)

    training.finetune, training.calibrate = keep_finetune, keep_calibrate
    rv.labelled_scores = keep_scores
    real = REPO / "data" / "real_labelled"
    argv = ["train", "--output", str(workdir / "model"), "--band-map", "crts",
            "--real", str(real / "crts_train"), "--real", str(real / "tdss_quasars")]  # fmt: skip
    if main(argv) != 0:
        raise SystemExit("varsky train failed")
    with open(workdir / "kept.pkl", "wb") as f:
        pickle.dump(kept, f, protocol=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/varsky_seeds"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if not (args.workdir / "kept.pkl").exists():
        dump_training(args.workdir)
    import keras

    from udfs.model.training import finetune, take

    kept = pickle.load(open(args.workdir / "kept.pkl", "rb"))
    (ft_args, ft_kw), r_val = kept["finetune"], kept["r_val"]
    (labels, group, classes), _quasars = kept["groups"]  # crts_train, then tdss_quasars
    r_arrays, r_targets = ft_args[0], ft_args[1]
    agn = classes.index("agn")
    rows = np.flatnonzero(r_val)
    quasar = r_targets[rows][:, agn] > 0  # CRTS stars are never agn
    assert (~quasar).sum() == len(labels)
    x_val = take(r_arrays, rows)

    def report(p: np.ndarray, tag: str) -> None:
        pred = np.asarray(classes)[p[~quasar].argmax(1)]
        ok = np.array([c in lab.split("|") for c, lab in zip(pred, labels, strict=True)])
        recall = {k: ok[group == k].mean() for k in SEVEN}
        print(
            f"{tag:>10} | mean of seven {np.mean(list(recall.values())):.3f} | "
            + " ".join(f"{k} {v:.3f}" for k, v in recall.items())
            + f" | CRTS called agn {(pred == 'agn').mean():.2%}"
            + f" | TDSS agn recall {(p[quasar].argmax(1) == agn).mean():.3f}",
            flush=True,
        )

    members = []
    for seed in range(args.seeds):
        model = keras.models.load_model(args.workdir / "pretrained.keras", safe_mode=True)
        keras.utils.set_random_seed(1000 + seed)
        finetune(model, *ft_args, **ft_kw)
        members.append(model.predict(x_val, batch_size=2048, verbose=0))
        report(members[-1], f"seed {seed}")
        if len(members) > 1:
            report(np.mean(members, axis=0), f"mean of {len(members)}")


if __name__ == "__main__":
    main()
