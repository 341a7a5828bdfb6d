"""The DR5 census of two models side by side, and the stars whose class changed.

Runs `varsky classify` (the job `make demo` runs) on the bundled ZTF DR5 quadrant once per model,
joins the two catalogs by objectid and prints: the census of each (objects per predicted class),
the fraction called variable (any class but constant and bogus), a table of class changes
(from -> to: objects) and the first examples of each change with what the variability stage saw.

    .venv/bin/python bench/census.py --before OLD_MODEL_DIR [--after models/varsky_dmdt_cnn]

(For a model of an older commit: ``git worktree add /tmp/old COMMIT`` and pass
``--before /tmp/old/models/varsky_dmdt_cnn``.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
VARSKY = Path(sys.executable).parent / "varsky"
COLUMNS = ["objectid", "predicted_class", "p_variable", "settled_as_constant", "n_good"]


def census(model: str, out: Path) -> dict[int, dict]:
    """objectid -> row of the catalog `varsky classify --model model` writes of the sample."""
    subprocess.run([str(VARSKY), "classify", "--input", str(SAMPLE), "--output", str(out),
                    "--model", model], check=True, capture_output=True)  # fmt: skip
    table = pq.read_table(out / "varsky_classification" / "dataset", columns=COLUMNS)
    return {row["objectid"]: row for row in table.to_pylist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="model directory to compare with")
    parser.add_argument("--after", default=str(REPO / "models" / "varsky_dmdt_cnn"))
    parser.add_argument("--examples", type=int, default=3, help="examples per change")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="varsky_census_") as tmp:
        before = census(args.before, Path(tmp) / "before")
        after = census(args.after, Path(tmp) / "after")
    assert sorted(before) == sorted(after), "the two runs classified different objects"
    n = len(after)
    counts = {k: Counter(r["predicted_class"] for r in c.values())
              for k, c in (("before", before), ("after", after))}  # fmt: skip
    print("| predicted class | before | after |\n|---|---:|---:|")
    for name in sorted(set(counts["before"]) | set(counts["after"]), key=lambda c: (
            -counts["after"].get(c, 0), c)):  # fmt: skip
        print(f"| {name} | {counts['before'].get(name, 0):,} | {counts['after'].get(name, 0):,} |")
    for key in counts:  # bogus (an artefact) is not a variable star
        variable = n - counts[key].get("constant", 0) - counts[key].get("bogus", 0)
        print(
            f"{key}: {variable:,} of {n:,} called variable ({variable / n:.1%}; not counting "
            f"{counts[key].get('bogus', 0):,} bogus)"
        )
    changes: dict[tuple[str, str], list[int]] = {}
    for oid in sorted(after):
        a, b = before[oid]["predicted_class"], after[oid]["predicted_class"]
        if a != b:
            changes.setdefault((a, b), []).append(oid)
    print(f"\n{sum(map(len, changes.values())):,} objects changed class\n")
    print("| before -> after | objects | examples (objectid: good epochs, p_variable, settled) |")
    print("|---|---:|---|")
    for (a, b), oids in sorted(changes.items(), key=lambda kv: -len(kv[1])):
        examples = "; ".join(
            f"{oid}: {after[oid]['n_good']}, {after[oid]['p_variable']:.3f}, "
            f"{'yes' if after[oid]['settled_as_constant'] else 'no'}"
            for oid in oids[: args.examples]
        )
        print(f"| {a} -> {b} | {len(oids):,} | {examples} |")


if __name__ == "__main__":
    main()
