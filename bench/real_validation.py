"""A model on real labelled stars, through the commands a user runs: ingest, then classify.

For each real labelled set (data/real_labelled), the objects of its validation split (the split
`varsky train` never trains on: udfs.model.training.real_split with the seed and fraction in the
model card) are written as one long detection table (the user's own preparation: the label table's
int64 ids as objectid), then

    varsky ingest --format detections --band-map crts --input VAL.parquet --output LC
    varsky classify --input LC --output CLS --model MODEL

and the catalog is joined to the labels. Printed per set: objects in, classified, rejected (too
few epochs), per-class precision/recall/F1 (a prediction is right when the catalog's
predicted_class is any of the label's acceptable classes), recall per source label with what the
objects were called, the share called a transient class, and for CRTS the seven classes of
Mahabal et al. 2017 beside the paper's recall. ZTF BTS transients: the transient head's
validation split (objects with at least 3 epochs, classified with --min-epochs 3), whole and cut
to their first 3, 5 and 10 detections, with recall and purity per transient class (nova = cv),
the macro-F1 over sn_ia, sn_ii, sn_ibc and slsn, and the share called a periodic-variable class.

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
from catalogs.schema import TRANSIENT_CLASS_NAMES  # noqa: E402

REAL = REPO / "data" / "real_labelled"
#: The periodic-variable classes (a transient called one of these is lost to the transients).
PERIODIC_CLASSES = ("rrab", "rrc", "cepheid", "delta_scuti", "ew", "ea", "mira", "semiregular",
                    "rotational")  # fmt: skip
#: Scored set -> (labelled set, band map, which objects). "validation": the split `varsky
#: train` kept back (made among objects with at least the card's min_epochs epochs, as in
#: training); "sparse": the objects with fewer epochs, never trained on, classified with a lower
#: --min-epochs to show what sparse light curves give; "all": every object.
SETS = {
    "crts_train": ("crts_train", "crts", "validation"),
    "tdss_quasars": ("tdss_quasars", "ztf", "validation"),
    "tdss_quasars_sparse": ("tdss_quasars", "ztf", "sparse"),
    "ztf_bts": ("ztf_bts", "ztf", "transients"),
    "ztf_bts_first_3": ("ztf_bts", "ztf", "transients:3"),
    "ztf_bts_first_5": ("ztf_bts", "ztf", "transients:5"),
    "ztf_bts_first_10": ("ztf_bts", "ztf", "transients:10"),
}
#: --min-epochs of classify for the sparse objects.
SPARSE_MIN_EPOCHS = 6


def validation_detections(name: str, fraction: float, seed: int, which: str, min_epochs: int):
    """The set's objects to score: their detections (objectid = objectid_int) and labels.

    ``which``: "validation" or "sparse" (see SETS), "transients" (the transient head's
    validation split, made among objects with at least 3 epochs) or "transients:N" (the same
    objects, each cut to its first N detections in time order, all bands).
    """
    from udfs.model.training import TOO_SPARSE, VALIDATION, labelled_set_split
    from udfs.model.transient_training import MIN_TRANSIENT_EPOCHS

    first = None
    if which.startswith("transients"):
        which, _, n = which.partition(":")
        first, min_epochs, which = (int(n) if n else None), MIN_TRANSIENT_EPOCHS, "validation"

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
    if first is not None:
        dets = dets.sort_by([("objectid", "ascending"), ("mjd", "ascending")])
        obj = dets.column("objectid").to_numpy()
        starts = np.r_[0, np.flatnonzero(np.diff(obj)) + 1]
        rank = np.arange(obj.size) - np.repeat(starts, np.diff(np.r_[starts, obj.size]))
        dets = dets.filter(pa.array(rank < first))
    return dets, labels


def recall_at_purity(score: np.ndarray, positive: np.ndarray, purity: float) -> tuple[float, float]:
    """The largest recall of ``score >= threshold`` with at least ``purity``; and the threshold."""
    order = np.argsort(-score, kind="stable")
    hits = np.cumsum(positive[order])
    purities = hits / np.arange(1, order.size + 1)
    ok = np.flatnonzero(purities >= purity)
    if not ok.size or not positive.any():
        return 0.0, float("nan")
    k = ok[-1]
    return float(hits[k] / positive.sum()), float(score[order][k])


def transient_table(called: list[str], accepted: list[str], p_ia=None) -> dict:
    """Per transient class recall and purity of the catalog's calls (nova = cv), the SN macro-F1,
    the share of transients called a periodic-variable class, and SN Ia recall at purity 0.90
    when ranked by ``p_ia`` (the catalog's p_sn_ia)."""
    from udfs.model.transient_training import SN_CLASSES, class_scores

    truth = [a.split("|")[0] for a in accepted]
    names = (*TRANSIENT_CLASS_NAMES, "cv")

    def index(classes):  # -1: a class outside the table
        return np.array([names.index(c) if c in names else -1 for c in classes], np.int64)

    per_class = class_scores(index(truth), index(called), names)
    periodic = sum(k in PERIODIC_CLASSES for k in called)
    ia = {}
    if p_ia is not None:
        recall, threshold = recall_at_purity(np.nan_to_num(p_ia), np.array(truth) == "sn_ia", 0.9)
        ia = {"sn_ia_recall_at_purity_0.90": recall, "sn_ia_threshold_at_purity_0.90": threshold}
    return ia | {
        "transient_per_class": per_class,
        "macro_f1_sn": float(np.mean([per_class.get(c, {}).get("f1", 0.0) for c in SN_CLASSES])),
        "called_periodic_fraction": periodic / max(len(called), 1),
    }


def format_transient_table(entry: dict) -> str:
    """The transient table's lines."""
    lines = [f"  {'class':<16} {'n':>5} {'called':>6} {'recall':>7} {'purity':>7} {'F1':>6}"]
    for c, v in entry["transient_per_class"].items():
        lines.append(f"  {c:<16} {v['n']:5d} {v['called']:6d} {v['recall']:7.3f} "
                     f"{v['purity']:7.3f} {v['f1']:6.3f}")  # fmt: skip
    lines.append(f"  SN macro-F1 (sn_ia, sn_ii, sn_ibc, slsn) {entry['macro_f1_sn']:.3f}; "
                 f"called periodic: {entry['called_periodic_fraction']:.2%}")  # fmt: skip
    if "sn_ia_recall_at_purity_0.90" in entry:
        lines.append(f"  SN Ia recall at purity 0.90 (ranked by p_sn_ia): "
                     f"{entry['sn_ia_recall_at_purity_0.90']:.3f} (p_sn_ia >= "
                     f"{entry['sn_ia_threshold_at_purity_0.90']:.3f})")  # fmt: skip
    return "\n".join(lines)


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
    if not card.transients:
        args.sets = [s for s in args.sets if not s.startswith("ztf_bts_first")]
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
        if which.startswith("transients"):
            min_epochs = 3
        path = work / f"{name}_validation.parquet"
        pq.write_table(dets, path)
        lc, out = work / f"{name}_lc", work / f"{name}_classified"
        t_ingest = varsky("ingest", "--format", "detections", "--band-map", band_map,
                          "--input", str(path), "--output", str(lc), "--overwrite")  # fmt: skip
        t_classify = varsky("classify", "--input", str(lc), "--output", str(out),
                            "--model", args.model, "--overwrite",
                            "--min-epochs", str(min_epochs))  # fmt: skip
        catalog = pq.read_table(out / "varsky_classification" / "dataset")
        classes = list(card.output_classes)
        ids = catalog.column("objectid").to_numpy()
        probabilities = np.nan_to_num(
            np.stack([catalog.column(f"p_{c}").to_numpy() for c in classes], axis=1)
        ).astype(np.float32)
        called_names = catalog.column("predicted_class").to_pylist()
        predicted = np.array([classes.index(c) for c in called_names], np.int64)
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
        transient = np.isin(called_names, TRANSIENT_CLASS_NAMES)
        entry["called_transient_fraction"] = float(transient.mean()) if transient.size else 0.0
        print(f"  called a transient class: {entry['called_transient_fraction']:.2%}")
        if which.startswith("transients"):
            p_ia = (
                catalog.column("p_sn_ia").to_numpy() if "p_sn_ia" in catalog.column_names else None
            )
            entry |= transient_table(called_names, [accepted[r] for r in rows], p_ia)
            print(format_transient_table(entry))
        known = [all(c in classes for c in accepted[r].split("|")) for r in rows]
        if all(known) and not which.startswith("transients"):
            scores = labelled_scores(
                probabilities,
                [accepted[r] for r in rows],
                [groups[r] for r in rows],
                classes,
                predicted,
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
            agn = float(np.mean(predicted == classes.index("agn")))
            entry["called_agn_fraction"] = agn
            print(f"  called agn: {agn:.2%}")
        else:
            called = np.asarray(called_names)
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
