"""The equalized dm-dt grid against the Mahabal 2017 grid, same recipe otherwise.

Trains two models with `varsky train` (pretrain on the simulator, fine-tune on the real labelled
sets, calibrate), identical but for --grid, and prints the synthetic test macro F1 and the real
validation scores of each (from the cards). Smaller than `make model` by default so that both fit
in about 20 minutes on 2 cores.

    .venv/bin/python bench/grid_comparison.py [--objects-per-class 3000] [--epochs 12]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    from udfs.model.classifier import ModelCard

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects-per-class", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--grids", nargs="+", default=["mahabal2017", "equalized"])
    parser.add_argument("--workdir", help="keep the models here")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="varsky_grids_"))
    rows = []
    for grid in args.grids:
        out = work / grid
        t0 = time.perf_counter()
        subprocess.run(
            [
                str(REPO / ".venv" / "bin" / "varsky"), "train", "--output", str(out),
                "--grid", grid, "--objects-per-class", str(args.objects_per_class),
                "--epochs", str(args.epochs), "--band-map", "crts",
                "--real", str(REPO / "data" / "real_labelled" / "crts_train"),
                "--real", str(REPO / "data" / "real_labelled" / "tdss_quasars"),
            ],
            check=True,
        )  # fmt: skip
        card = ModelCard.read(out)
        crts = card.real_validation["crts_train"]
        tdss = card.real_validation["tdss_quasars"]
        seven = crts["mahabal2017"]["varsky"]
        rows.append(
            {
                "grid": grid,
                "synthetic test macro F1": card.test_metrics.macro_f1,
                "CRTS seven-class mean recall": crts["mahabal2017"]["varsky_mean"],
                **{f"CRTS {k}": v for k, v in seven.items()},
                "CRTS accuracy (all labels)": crts["accuracy"],
                "TDSS agn recall": tdss["per_class"]["agn"]["recall"],
                "seconds": round(time.perf_counter() - t0),
            }
        )
    print(f"\n{args.objects_per_class} simulated per class, {args.epochs} pretraining epochs")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()]
        print("| " + " | ".join(cells) + " |")
    (work / "grid_comparison.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
