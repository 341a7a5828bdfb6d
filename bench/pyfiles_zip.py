"""What a Spark Python worker pays to start classifying when varsky comes in a --py-files zip.

spark-submit.sh ships jobs/, udfs/, catalogs/ and reports/ as a zip. For this tree and a baseline
commit (a git worktree), the bench builds that zip, then starts two fresh Python processes one
after the other with the zip first on sys.path and one NUMBA_CACHE_DIR (empty at first), as two
Python workers of one machine would. Each imports the classify kernels and runs them on 20 DR5
light curves (variability statistics, dm-dt images, periodogram, features). Printed: the
seconds of the imports and of the kernels' first call, per process.

    .venv/bin/python bench/pyfiles_zip.py --baseline 4a7287b
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from throughput import baseline_worktree  # noqa: E402

_CHILD = """
import os, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
import numpy as np
from udfs.classifier import ModelCard
from udfs.model_inputs import model_inputs
from udfs.variability import variability_statistics
from udfs.variability_training import dr_lightcurves
card = ModelCard.read(os.path.join(sys.argv[2], "models", "varsky_dmdt_cnn"))
dr5 = os.path.join(sys.argv[2], "data", "sample", "ztf_000250_zg_c01_q1_dr5.parquet")
lc = dr_lightcurves(dr5, 20, 1).take(np.arange(20))
t1 = time.perf_counter()
variability_statistics(lc, card.input_shape[-1])
model_inputs(lc, card.grid, card.input_shape[-1], card.norm, card.periodogram, bool(card.features))
import udfs.periodogram
print(t1 - t0, time.perf_counter() - t1, udfs.periodogram.__file__)
"""


def build_zip(tree: Path, archive: Path) -> None:
    """The zip spark-submit.sh ships, of ``tree``'s packages."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for package in ("jobs", "udfs", "catalogs", "reports"):
            for path in sorted((tree / package).rglob("*.py")):
                z.write(path, path.relative_to(tree).as_posix())


def two_workers(tree: Path, work: Path) -> list[tuple[float, float, str]]:
    """(import s, first kernels s, where udfs.periodogram came from) of two fresh processes."""
    work.mkdir()
    build_zip(tree, work / "varsky-pyfiles.zip")
    env = {"NUMBA_CACHE_DIR": str(work / "numba_cache"), "PATH": "/usr/bin:/bin"}
    out = []
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, "-c", _CHILD, str(work / "varsky-pyfiles.zip"), str(tree)],
            env=env, cwd=work, capture_output=True, text=True, check=True,
        )  # fmt: skip
        imports, kernels, where = run.stdout.split()
        out.append((float(imports), float(kernels), where))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="commit to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="varsky_pyfiles_") as tmp_name:
        tmp = Path(tmp_name)
        with baseline_worktree(args.baseline, tmp) as worktree:
            runs = {args.baseline: two_workers(worktree, tmp / "base")}
        runs["this tree"] = two_workers(REPO, tmp / "now")
    print("| code | worker | imports, s | kernels' first call, s | udfs modules from |")
    print("|---|---:|---:|---:|---|")
    for name, results in runs.items():
        for k, (imports, kernels, where) in enumerate(results, 1):
            place = "the zip" if ".zip/" in where else "an extracted copy"
            print(f"| {name} | {k} | {imports:.1f} | {kernels:.1f} | {place} |")


if __name__ == "__main__":
    main()
