"""Hand-written code that a library could replace, timed against the library (issue 12's rule:
keep hand-written code only where a benchmark says so).

1. Adaptive tiles from a count histogram: ``catalogs.hats_tiles.Tiles.from_counts`` against hats'
   ``generate_alignment`` (same histogram: a uniform sky plus a dense 2-degree blob; hats maps
   every histogram pixel to its tile, varsky keeps only the tiles, vectorised). Also checks that
   the tiles agree (tests/test_hats_tiles.py does too).
2. Heliocentric times: ``catalogs.time_scales.heliocentric_mjd`` (a low-precision Sun, numpy)
   against astropy's ``Time.light_travel_time`` (builtin ephemeris, Palomar), with the largest
   difference (tests/test_time_scales.py bounds it at 0.2 s).
3. Spherical geometry of the association: ``udfs.kernels.association`` unit vectors and chord angles
   (numpy) against astropy's ``SkyCoord.cartesian`` and ``SkyCoord.separation`` on the same
   positions, with the largest differences.

    .venv/bin/python bench/library_alternatives.py [--objects 2000000] [--order 8] [--epochs 100000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from hats.pixel_math.partition_stats import generate_alignment

    from catalogs.hats_tiles import Tiles, histogram
    from catalogs.healpix import healpix_29

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=2_000_000)
    parser.add_argument("--order", type=int, default=8)
    parser.add_argument("--max-rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=100_000, help="heliocentric times to compute")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    half = args.objects // 2
    ra = np.concatenate([rng.uniform(0, 360, half), rng.normal(150, 2, half) % 360])
    dec = np.concatenate(
        [np.degrees(np.arcsin(rng.uniform(-1, 1, half))), np.clip(rng.normal(20, 2, half), -90, 90)]
    )
    counts = histogram(healpix_29(ra, dec), args.order)
    t0 = time.perf_counter()
    tiles = Tiles.from_counts(counts, args.order, args.max_rows)
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    alignment = generate_alignment(counts, highest_order=args.order, threshold=args.max_rows)
    hats_s = time.perf_counter() - t0
    theirs = sorted({(int(a[0]), int(a[1])) for a in alignment if a is not None and a[2] > 0})
    orders, pixels = tiles.to_arrays()
    ours = sorted(zip(orders.tolist(), pixels.tolist(), strict=True))
    print(f"histogram order {args.order} ({counts.size:,} pixels), {args.objects:,} objects")
    print(f"  Tiles.from_counts        {ours_s * 1e3:8.1f} ms, {len(ours)} tiles")
    print(f"  hats generate_alignment  {hats_s * 1e3:8.1f} ms, {len(theirs)} tiles")
    print(f"  ratio {hats_s / ours_s:.0f}x; same tiles: {ours == theirs}")
    heliocentric(args.epochs)
    spherical(args.objects)


def heliocentric(n: int) -> None:
    import astropy.units as u
    from astropy.coordinates import EarthLocation, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers

    from catalogs.time_scales import heliocentric_mjd

    iers.conf.auto_download = False
    rng = np.random.default_rng(1)
    mjd = rng.uniform(58200, 60000, n)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    t0 = time.perf_counter()
    ours = heliocentric_mjd(mjd, ra, dec)
    ours_s = time.perf_counter() - t0
    palomar = EarthLocation.from_geodetic(-116.8650 * u.deg, 33.3563 * u.deg, 1712 * u.m)
    t0 = time.perf_counter()
    times = Time(mjd, format="mjd", scale="utc", location=palomar)
    ltt = times.light_travel_time(SkyCoord(ra, dec, unit="deg"), kind="heliocentric")
    astropy_mjd = mjd + ltt.to_value(u.day)
    astropy_s = time.perf_counter() - t0
    print(f"heliocentric times of {n:,} epochs")
    print(f"  heliocentric_mjd               {ours_s * 1e3:9.1f} ms")
    print(f"  astropy Time.light_travel_time {astropy_s * 1e3:9.1f} ms")
    diff_s = np.abs(ours - astropy_mjd).max() * 86400
    print(f"  ratio {astropy_s / ours_s:.0f}x; largest difference {diff_s:.3f} s")


def spherical(n: int) -> None:
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    from udfs.kernels.association import arcsec_of_chord, unit_vectors

    rng = np.random.default_rng(2)
    ra, dec = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    ra2, dec2 = ra + rng.normal(0, 1e-3, n), np.clip(dec + rng.normal(0, 1e-3, n), -90, 90)
    t0 = time.perf_counter()
    a, b = unit_vectors(ra, dec), unit_vectors(ra2, dec2)
    ours = arcsec_of_chord(np.linalg.norm(a - b, axis=1))
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    one, two = SkyCoord(ra * u.deg, dec * u.deg), SkyCoord(ra2 * u.deg, dec2 * u.deg)
    xyz = one.cartesian.xyz.value.T
    theirs = one.separation(two).arcsec
    astropy_s = time.perf_counter() - t0
    print(f"unit vectors and separations of {n:,} pairs")
    print(f"  udfs.kernels.association (numpy)       {ours_s * 1e3:9.1f} ms")
    print(f"  astropy SkyCoord               {astropy_s * 1e3:9.1f} ms")
    print(
        f"  ratio {astropy_s / ours_s:.1f}x; largest differences: unit vector "
        f"{np.abs(xyz - a).max():.1e}, separation {np.abs(theirs - ours).max():.1e} arcsec"
    )


if __name__ == "__main__":
    main()
