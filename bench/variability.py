"""The variability stage and the network on real variables and on noise-only twins of them.

For each real set (never trained on: the validation splits of the labelled sets, the held-out
half of the bundled DR5 quadrant), three kinds of light curves go through the classify chain
(`udfs.model.inference.classify_batch`, the function every engine calls, with the model's stage on):

- the real light curves themselves (CRTS periodic variables, TDSS quasars; the DR5 stars are
  unlabelled, mostly constant);
- noise-only twins with ideal noise (Gaussian of the quoted errors);
- noise-only twins with realistic noise (`udfs.simulators.noise_twins.REALISTIC`: errors too
  small by 0.9-1.4x, 1% of epochs 3-5 errors off, 0.3% bad exposures 0.1-0.5 mag off).

Printed per set and kind: objects, the fraction the stage passes to the network, the fraction
called constant in the end, and the classes called instead. For variables, the fraction the
stage lets go (settles as constant) is the "lost" column.

Then realistic skies of each cadence, 10% variables: the CRTS validation variables with nine
twin draws of each; on DR5 cadences, simulated variables of every class on the quadrant's real
cadences (60 per class, seed 99) with twins of the held-out half. Printed: the purity and
completeness of the variable calls (any class but constant).

    .venv/bin/python bench/variability.py [--model models/varsky_dmdt_cnn] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REAL = REPO / "data" / "real_labelled"
DR5 = REPO / "data" / "sample" / "ztf_000250_zg_c01_q1_dr5.parquet"


def batch_of(lc) -> pa.RecordBatch:
    """A classify_batch input (carried columns and light curves) of flat light curves."""
    from catalogs.schema import CARRIED_COLUMNS, LIGHTCURVE
    from udfs.kernels.model_inputs import lightcurve_array

    n = lc.n_lightcurves
    lightcurve = lightcurve_array(lc)
    counts = np.diff(lc.offsets).astype(np.int32)
    columns = {
        "objectid": pa.array(np.arange(n, dtype=np.int64)),
        "ra": pa.array(np.zeros(n)),
        "dec": pa.array(np.zeros(n)),
        "_healpix_29": pa.array(np.zeros(n, np.int64)),
        "n_good": pa.array(counts),
        "n_good_g": pa.array(counts),
        "n_good_r": pa.array(np.zeros(n, np.int32)),
        "n_good_i": pa.array(np.zeros(n, np.int32)),
        "source_file": pa.array(["bench"] * n),
    }
    assert tuple(columns) == CARRIED_COLUMNS
    return pa.RecordBatch.from_arrays([*columns.values(), lightcurve],
                                      names=[*columns, LIGHTCURVE])  # fmt: skip


def validation_sets(card) -> dict:
    """Name -> (flat light curves, whether they are real variables)."""
    from catalogs.band_map import BandMap
    from udfs.model.training import VALIDATION
    from udfs.model.variability_training import dr_lightcurves, labelled_lightcurves

    split = (card.variability.calibration.get("real_split") or {}) if card.variability else {}
    fraction, seed = split.get("val_fraction", 0.2), split.get("seed", 2026)
    crts = BandMap.parse("crts")
    return {
        "CRTS periodic variables (validation)": (
            labelled_lightcurves(REAL / "crts_train", crts, 20, fraction, seed, VALIDATION),
            True,
        ),
        "TDSS quasars (validation)": (
            labelled_lightcurves(REAL / "tdss_quasars", crts, 20, fraction, seed, VALIDATION),
            True,
        ),
        "ZTF DR5 quadrant (held-out half)": (dr_lightcurves(DR5, 20, 1), False),
    }


def score(classifier, stage, lc, batch_size=256) -> dict:
    """Pass rate of the stage and what the chain calls the light curves."""
    from udfs.model.inference import StageTimes, classify_batch

    times = StageTimes()
    out = classify_batch(batch_of(lc), classifier, batch_size, times, stage)
    classes = Counter(out.column("predicted_class").to_pylist())
    n = out.num_rows
    return {
        "n": n,
        "passed": 1 - times.n_settled / n,
        "constant": classes.get("constant", 0) / n,
        "instead": {k: v for k, v in classes.most_common(4) if k != "constant"},
        "seconds": times.variability_s + times.inputs_s + times.predict_s,
    }


def variable_calls(classifier, stage, lc, batch_size=256) -> np.ndarray:
    """Whether the chain calls each light curve variable (any class but constant)."""
    from udfs.model.inference import classify_batch

    out = classify_batch(batch_of(lc), classifier, batch_size, None, stage)
    return np.asarray(out.column("predicted_class").to_pylist()) != "constant"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "varsky_dmdt_cnn"))
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    from astropy.utils import iers

    iers.conf.auto_download = False
    from udfs.model.classifier import Classifier, ModelCard
    from udfs.model.variability import stage_of
    from udfs.simulators.noise_twins import IDEAL, REALISTIC, noise_twins

    card = ModelCard.read(args.model)
    classifier = Classifier.load(Path(args.model) / "model.keras", card)
    stage = stage_of(card)
    if stage is None:
        raise SystemExit(f"{args.model}: the model card has no variability stage")
    rng = np.random.default_rng(args.seed)
    results = {}
    t0 = time.perf_counter()
    print(f"model {card.name}, stage threshold p_variable >= {stage.threshold:.4g}")
    print("| set | light curves | objects | passed by the stage | called constant | "
          "called instead |")  # fmt: skip
    print("|---|---|---:|---:|---:|---|")
    for name, (lc, variable) in validation_sets(card).items():
        kinds = {"real": lc} if variable else {"real (unlabelled)": lc}
        kinds |= {f"twins, {m.name} noise": noise_twins(lc, m, rng) for m in (IDEAL, REALISTIC)}
        for kind, curves in kinds.items():
            r = score(classifier, stage, curves)
            results[f"{name} / {kind}"] = r
            instead = ", ".join(f"{k} {v / r['n']:.3f}" for k, v in r["instead"].items())
            print(f"| {name} | {kind} | {r['n']:,} | {r['passed']:.4f} | {r['constant']:.4f} | "
                  f"{instead} |", flush=True)  # fmt: skip
    print(f"({time.perf_counter() - t0:.0f} s; for real variables 1 - passed is what the stage "
          "lets go)")  # fmt: skip
    sets = validation_sets(card)
    crts = sets["CRTS periodic variables (validation)"][0]
    dr = sets["ZTF DR5 quadrant (held-out half)"][0]
    from udfs.model.variability_training import simulated_variables

    print("| cadence | twins' noise | variables | twins | variable calls | purity | completeness |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for cadence, var, template in (
        ("CRTS", crts, crts),
        ("ZTF DR5", simulated_variables(DR5, 60, 99), dr),
    ):
        draws = int(np.ceil(9 * var.n_lightcurves / template.n_lightcurves))
        hits = int(variable_calls(classifier, stage, var).sum())
        for m in (IDEAL, REALISTIC):
            false = sum(
                int(variable_calls(classifier, stage, noise_twins(template, m, rng)).sum())
                for _ in range(draws)
            )
            n_twins = draws * template.n_lightcurves
            results[f"sky {cadence} / {m.name}"] = {"variables": var.n_lightcurves,
                                                   "twins": n_twins, "hits": hits,
                                                   "false": false}  # fmt: skip
            print(f"| {cadence} | {m.name} | {var.n_lightcurves:,} | {n_twins:,} | "
                  f"{hits + false:,} | {hits / max(hits + false, 1):.4f} | "
                  f"{hits / var.n_lightcurves:.4f} |", flush=True)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
