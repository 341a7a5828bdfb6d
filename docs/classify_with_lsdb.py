"""varsky from a notebook: open a HATS light-curve catalog with lsdb, classify a cone, plot it.

Runnable as it is (about a minute on 2 cores):

    .venv/bin/python docs/classify_with_lsdb.py [--catalog PATH] [--out docs/images/...png]

Without ``--catalog`` it first writes the bundled ZTF DR5 quadrant (data/sample) in IRSA's HATS
layout (one row per object, the epochs nested under ``lightcurve``), as IRSA publishes ZTF's
light curves; point ``--catalog`` at such a catalog (a local copy or IRSA's) to use real ones.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample" / "ztf_000250_zg_c01_q1_dr5.parquet"


def write_sample_as_irsa_hats(folder: Path) -> Path:
    """The bundled DR5 file as an IRSA-layout HATS catalog (nested light curves)."""
    import lsdb
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(SAMPLE)
    epochs = ["hmjd", "mag", "magerr", "clrcoeff", "catflags"]
    nested = pa.StructArray.from_arrays([t[c].combine_chunks() for c in epochs], names=epochs)
    objects = ("objectid", "objra", "objdec", "filterid", "fieldid", "rcid", "nepochs")
    table = pa.table({c: t[c] for c in objects} | {"lightcurve": nested})
    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    lsdb.from_dataframe(
        frame, ra_column="objra", dec_column="objdec", catalog_name="ztf_dr5_sample"
    ).write_catalog(folder)
    return folder


def main() -> None:
    """Classify a cone of the catalog and save a sky plot of the classes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, help="IRSA-layout HATS light-curve catalog")
    parser.add_argument("--ra", type=float, default=41.7, help="cone centre, degrees")
    parser.add_argument("--dec", type=float, default=-26.65, help="cone centre, degrees")
    parser.add_argument("--radius", type=float, default=1200.0, help="cone radius, arcsec")
    parser.add_argument(
        "--out", type=Path, default=REPO / "docs" / "images" / "lsdb_cone_classes.png"
    )
    args = parser.parse_args()

    import lsdb
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from distributed import Client, LocalCluster

    from udfs.engines.lsdb_engine import classify_catalog

    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster),
    ):
        path = args.catalog or write_sample_as_irsa_hats(Path(tmp) / "ztf_dr5_sample")
        cone = lsdb.ConeSearch(ra=args.ra, dec=args.dec, radius_arcsec=args.radius)
        lightcurves = lsdb.open_catalog(path, search_filter=cone)
        classes = classify_catalog(lightcurves)  # lazy: nothing has run yet
        frame = classes.compute()

    counts = frame["predicted_class"].value_counts()
    print(f"{len(frame):,} objects classified in the cone")
    print(counts.to_string())
    fig, ax = plt.subplots(figsize=(7, 6))
    constant = frame["predicted_class"] == "constant"
    ax.scatter(frame.loc[constant, "ra"], frame.loc[constant, "dec"], s=3, c="0.8",
               label=f"constant ({int(constant.sum())})")  # fmt: skip
    for name in counts.index.drop("constant", errors="ignore"):
        rows = frame[frame["predicted_class"] == name]
        ax.scatter(rows["ra"], rows["dec"], s=14, label=f"{name} ({len(rows)})")
    ax.invert_xaxis()
    ax.set_xlabel("RA, degrees")
    ax.set_ylabel("Dec, degrees")
    ax.set_title(f"varsky classes in a {args.radius:g} arcsec cone (lsdb + Dask)")
    ax.legend(fontsize=7, markerscale=1.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
