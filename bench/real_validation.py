"""A model on real labelled stars, through the commands a user runs: ingest, then classify.

For each real labelled set (data/real_labelled), the objects of its validation split (the split
`varsky train` never trains on: udfs.model.training.real_split with the seed and fraction in the
model card) are written as one long detection table (the user's own preparation: the label table's
int64 ids as objectid), then

    varsky ingest --format detections --band-map crts --input VAL.parquet --output LC
    varsky classify --input LC --output CLS --model MODEL

and the catalog is joined to the labels. Printed per set: objects in, classified, rejected (too
few epochs), per-class precision/recall/F1 (a prediction is right when its argmax is any of the
label's acceptable classes), recall per source label with what the objects were called, and for
CRTS the seven classes of Mahabal et al. 2017 beside the paper's recall. ZTF BTS transients are
outside the taxonomy: all of them are classified and what they are called is printed.

    .venv/bin/python bench/real_validation.py [--model models/varsky_dmdt_cnn] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
REAL = REPO / "data" / "real_labelled"
#: Scored set -> (labelled set, band map, which objects). "validation": the split `varsky
#: train` kept back (made among objects with at least the card's min_epochs epochs, as in
#: training); "sparse": the objects with fewer epochs, never trained on, classified with a lower
#: --min-epochs to show what sparse light curves give; "all": every object.
SETS = {
    "crts_train": ("crts_train", "crts", "validation"),
    "tdss_quasars": ("tdss_quasars", "ztf", "validation"),
    "tdss_quasars_sparse": ("tdss_quasars", "ztf", "sparse"),
    "ztf_bts": ("ztf_bts", "ztf", "all"),
}
#: --min-epochs of classify for the sparse objects.
SPARSE_MIN_EPOCHS = 6


def validation_detections(name: str, fraction: float, seed: int, which: str, min_epochs: int):
    """The set's objects to score: their detections (objectid = objectid_int) and labels."""
    from udfs.model.training import TOO_SPARSE, VALIDATION, labelled_set_split

    labels = pq.read_table(REAL / f"{name}_labels.parquet")
    dets = pq.read_table(REAL / f"{name}_detections.parquet")
    counts = dets.group_by("objectid").aggregate([("mjd", "count")])
    n_of = dict(zip(counts["objectid"].to_pylist(), counts["mjd_count"].to_pylist(), strict=True))
    n_epochs = np.array([n_of.get(o, 0) for o in labels.column("objectid").to_pylist()])
    split = labelled_set_split(
        name,
        labels.column("objectid_int").to_numpy(),
        labels.column("label_orig").to_pylist(),
        n_epochs,
        min_epochs,
        fraction,
        seed,
    )
    if which == "validation":
        labels = labels.filter(pa.array(split == VALIDATION))
    elif which == "sparse":
        labels = labels.filter(pa.array(split == TOO_SPARSE))
    dets = dets.filter(pc.is_in(dets.column("objectid"), labels.column("objectid")))
    index = pc.index_in(dets.column("objectid"), labels.column("objectid"))
    ids = labels.column("objectid_int").take(index)
    dets = dets.set_column(0, "objectid", ids).drop_columns(["band_orig"])
    return dets, labels


def varsky(*args: str) -> float:
    """Run a varsky command as a user would; return its wall seconds."""
    t0 = time.perf_counter()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([str(REPO / ".venv" / "bin" / "varsky"), *args], check=True, env=env)
    return time.perf_counter() - t0


def main() -> int:
    from udfs.model.classifier import ModelCard
    from udfs.model.real_validation import format_scores, labelled_scores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "varsky_dmdt_cnn"))
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--json", help="write the scores here")
    parser.add_argument("--workdir", help="keep the ingest and classify outputs here")
    parser.add_argument(
        "--min-epochs",
        type=int,
        default=20,
        help="classify's --min-epochs for the validation sets (default %(default)s; the sparse "
        f"quasars use {SPARSE_MIN_EPOCHS})",
    )
    args = parser.parse_args()
    card = ModelCard.read(args.model)
    fraction, seed = 0.2, 2026
    if card.fine_tuning:
        fraction = float(card.fine_tuning.get("validation_fraction", fraction))
        seed = int(card.fine_tuning.get("validation_seed", seed))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="varsky_realval_"))
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    train_min_epochs = int((card.fine_tuning or {}).get("min_epochs", 20))
    for name in args.sets:
        source, band_map, which = SETS[name]
        dets, labels = validation_detections(source, fraction, seed, which, train_min_epochs)
        min_epochs = SPARSE_MIN_EPOCHS if which == "sparse" else args.min_epochs
        path = work / f"{name}_validation.parquet"
        pq.write_table(dets, path)
        lc, out = work / f"{name}_lc", work / f"{name}_classified"
        t_ingest = varsky("ingest", "--format", "detections", "--band-map", band_map,
                          "--input", str(path), "--output", str(lc), "--overwrite")  # fmt: skip
        t_classify = varsky("classify", "--input", str(lc), "--output", str(out),
                            "--model", args.model, "--overwrite",
                            "--min-epochs", str(min_epochs))  # fmt: skip
        catalog = pq.read_table(out / "varsky_classification" / "dataset")
        classes = list(card.classes)
        ids = catalog.column("objectid").to_numpy()
        probabilities = np.stack(
            [catalog.column(f"p_{c}").to_numpy() for c in classes], axis=1
        ).astype(np.float32)
        where = {int(o): k for k, o in enumerate(labels.column("objectid_int").to_pylist())}
        rows = np.array([where[int(o)] for o in ids], dtype=np.int64)
        accepted = labels.column("classes").to_pylist()
        groups = labels.column("label_orig").to_pylist()
        entry = {
            "objects": labels.num_rows,
            "detections": dets.num_rows,
            "classified": int(ids.size),
            "not_classified": labels.num_rows - int(ids.size),
            "seconds": {"ingest": round(t_ingest, 1), "classify": round(t_classify, 1)},
        }
        print(
            f"\n== {name}: {labels.num_rows} objects ({which}), {ids.size} classified with "
            f"--min-epochs {min_epochs}, {labels.num_rows - ids.size} not (too few epochs); "
            f"ingest {t_ingest:.0f} s, classify {t_classify:.0f} s"
        )
        known = [all(c in classes for c in accepted[r].split("|")) for r in rows]
        if all(known):
            scores = labelled_scores(
                probabilities, [accepted[r] for r in rows], [groups[r] for r in rows], classes
            )
            entry["scores"] = scores
            print("\n".join(format_scores(name, scores)))
            right = np.array(
                [
                    classes[k] in accepted[r].split("|")
                    for k, r in zip(probabilities.argmax(1), rows, strict=True)
                ]
            )
            n_good = catalog.column("n_good").to_numpy()
            by_epochs = {}
            for lo, hi in ((0, 10), (10, 15), (15, 20), (20, 30), (30, 50), (50, 10**9)):
                inside = (n_good >= lo) & (n_good < hi)
                if inside.any():
                    key = f"{lo}-{hi - 1}" if hi < 10**9 else f">={lo}"
                    by_epochs[key] = {"n": int(inside.sum()), "recall": float(right[inside].mean())}
            entry["recall_by_epochs"] = by_epochs
            print("  right by good epochs: " + ", ".join(
                f"{k}: {v['recall']:.3f} ({v['n']})" for k, v in by_epochs.items()))  # fmt: skip
            agn = float(np.mean(probabilities.argmax(1) == classes.index("agn")))
            entry["called_agn_fraction"] = agn
            print(f"  called agn: {agn:.2%}")
        else:
            called = np.asarray(classes)[probabilities.argmax(1)]
            by_type = {}
            for r, c in zip(rows, called, strict=True):
                by_type.setdefault(accepted[r], {}).setdefault(str(c), 0)
                by_type[accepted[r]][str(c)] += 1
            entry["called"] = {
                t: dict(sorted(v.items(), key=lambda kv: -kv[1])) for t, v in by_type.items()
            }
            for t, v in entry["called"].items():
                print(f"  {t:<16} {sum(v.values()):5d}  " +
                      ", ".join(f"{k} {n}" for k, n in list(v.items())[:5]))  # fmt: skip
        results[name] = entry
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
