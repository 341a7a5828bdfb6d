"""A two-stage cascade measured: what a cheap first stage would let go, and what it would save.

Stage 1 makes every model input with a coarse periodogram (``--coarse`` frequencies at most,
instead of the card's 150,000) and runs the shipped network; an object it calls constant with
probability >= ``--threshold`` keeps that answer, every other object goes on to stage 2, the
full inputs and the network, exactly as classify does today. Printed for each set:

- the share of objects stage 1 keeps (the work saved is that share of the periodogram's cost);
- among objects whose label is not constant, the share stage 1 keeps (the variables it lets go;
  the issue's target is <= 0.5%), and the recall of every class with the cascade against the
  full classification;
- the seconds per object of stage-1 inputs and of full inputs.

Sets: the real validation split of CRTS variables and TDSS quasars (udfs.training's split, never
trained on), a fresh simulation (``--sim-per-class`` per class, a seed make model never used),
the bundled DR5 quadrant after classify's cuts, and noise-only twins of CRTS stars (their times
and errors, constant magnitudes), the bulk of a real field.

    .venv/bin/python bench/cascade.py [--coarse 5000] [--threshold 0.95] [--sim-per-class 300]
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
MODEL = REPO / "models" / "varsky_dmdt_cnn"


def real_sets(min_epochs: int) -> dict:
    """{name: (flat light curves, accepted classes per object)} of the real validation splits."""
    import pyarrow as pa

    from catalogs.band_map import BandMap
    from catalogs.labelled_sets import read_labelled_set
    from udfs.inference import flat_lightcurves
    from udfs.training import VALIDATION, labelled_set_split

    out = {}
    for name in ("crts_train", "tdss_quasars"):
        table = read_labelled_set(REAL / name, BandMap.parse("crts"))
        split = labelled_set_split(
            name,
            table.column("objectid").to_numpy(),
            table.column("label_orig").to_pylist(),
            table.column("n_epochs").to_numpy(),
            min_epochs,
            0.2,
            2026,
        )
        table = table.filter(pa.array(split == VALIDATION))
        classes = table.column("classes").to_pylist()
        out[f"{name} validation"] = (flat_lightcurves(table.column("lightcurve")), classes)
    return out


def twins(flat):
    """The same times and errors with a constant magnitude plus Gaussian noise of the errors."""
    rng = np.random.default_rng(11)
    n = flat.offsets.size - 1
    bounds = zip(flat.offsets[:-1], flat.offsets[1:], strict=True)
    base = np.repeat([np.median(flat.mag[a:b]) for a, b in bounds], np.diff(flat.offsets))
    mag = (base + rng.normal(0, 1, flat.mag.size) * flat.magerr).astype(flat.mag.dtype)
    return replace(flat, mag=mag), ["constant"] * n


def simulated(n_per_class: int):
    from catalogs.schema import CLASS_NAMES
    from udfs.lightcurve_simulator import simulate_lightcurves
    from udfs.model_inputs import FlatLightCurves

    sim = simulate_lightcurves(n_per_class, seed=777)
    flat = FlatLightCurves(sim.t_hmjd, sim.mag, sim.magerr, sim.channel, sim.offsets)
    return flat, [CLASS_NAMES[k] for k in sim.labels]


def dr5():
    from bench.finetune_ablation import dr5_lightcurves

    flat = dr5_lightcurves()
    return flat, None  # unlabelled: compared with the full classification only


def main() -> None:
    from udfs.classifier import Classifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coarse", type=int, default=5000)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--sim-per-class", type=int, default=300)
    args = parser.parse_args()
    classifier = Classifier.load(MODEL / "model.keras")
    card = classifier.card
    coarse = replace(card, periodogram=replace(card.periodogram, max_frequencies=args.coarse))
    classes = np.asarray(card.classes)
    constant = list(classes).index("constant")
    sets = real_sets(20)
    sets["CRTS noise-only twins"] = twins(sets["crts_train validation"][0])
    sets["simulated"] = simulated(args.sim_per_class)
    sets["DR5 quadrant"] = dr5()
    print(f"stage 1: periodogram capped at {args.coarse:,} frequencies; keeps constant at "
          f"p >= {args.threshold}")  # fmt: skip
    for name, (flat, labels) in sets.items():
        n = flat.offsets.size - 1
        t0 = time.perf_counter()
        p1 = classifier.predict(coarse.model_inputs(flat))
        s1 = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        p2 = classifier.predict(card.model_inputs(flat))
        s2 = (time.perf_counter() - t0) / n
        kept = (p1.argmax(1) == constant) & (p1[:, constant] >= args.threshold)
        full, cascade = classes[p2.argmax(1)], np.where(kept, "constant", classes[p2.argmax(1)])
        line = (
            f"{name:>26}: {n:5d} objects | stage 1 keeps {kept.mean():6.1%} | "
            f"{s1 * 1e3:.1f} ms vs {s2 * 1e3:.1f} ms per object | "
            f"same class as full {np.mean(full == cascade):.4f}"
        )
        if labels is not None:
            accepted = [set(a.split("|")) for a in labels]
            variable = np.array(["constant" not in a for a in accepted])
            if variable.any():
                line += f" | variables let go {kept[variable].mean():.2%}"
            right_full = np.array([c in a for c, a in zip(full, accepted, strict=True)])
            right = np.array([c in a for c, a in zip(cascade, accepted, strict=True)])
            changed = []
            for c in sorted({c for a in accepted for c in a}):
                m = np.array([c in a for a in accepted])
                if right_full[m].mean() != right[m].mean():
                    changed.append(f"{c} {right_full[m].mean():.3f}->{right[m].mean():.3f}")
            line += " | recall changed: " + (", ".join(changed) or "none")
        print(line, flush=True)


if __name__ == "__main__":
    main()
