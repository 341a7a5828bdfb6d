from __future__ import annotations

import astropy.units as u
import cdshealpix.nested
import numpy as np
import pytest
from hats.pixel_math import generate_alignment

from catalogs.hats_tiles import Tiles, histogram, margin_search_order, n_pixels
from catalogs.healpix import healpix_29

MAX_ROWS = 300


def sky_with_plane(rng: np.random.Generator, n_uniform=8000, n_plane=6000, n_poles=400):
    """Uniform sky, a dense 3-degree strip along the equator across RA=0, and polar points."""
    ra = rng.uniform(0, 360, n_uniform)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n_uniform)))
    plane_ra = rng.uniform(-60, 60, n_plane) % 360
    plane_dec = rng.uniform(-1.5, 1.5, n_plane)
    pole_ra = rng.uniform(0, 360, n_poles)
    pole_dec = np.where(rng.uniform(size=n_poles) < 0.5, 1, -1) * rng.uniform(88, 90, n_poles)
    return (
        np.concatenate([ra, plane_ra, pole_ra]),
        np.concatenate([dec, plane_dec, pole_dec]),
        np.concatenate(
            [np.zeros(n_uniform, bool), np.ones(n_plane, bool), np.zeros(n_poles, bool)]
        ),
    )


def offset(ra_deg, dec_deg, dist_arcsec, position_angle_rad):
    """Point at an angular distance and position angle from each (ra, dec), degrees."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    d = np.radians(dist_arcsec / 3600.0)
    dec2 = np.arcsin(
        np.clip(
            np.sin(dec) * np.cos(d) + np.cos(dec) * np.sin(d) * np.cos(position_angle_rad), -1, 1
        )
    )
    ra2 = ra + np.arctan2(
        np.sin(position_angle_rad) * np.sin(d) * np.cos(dec), np.cos(d) - np.sin(dec) * np.sin(dec2)
    )
    return np.degrees(ra2) % 360.0, np.degrees(dec2)


@pytest.fixture(scope="module")
def sky():
    rng = np.random.default_rng(29)
    ra, dec, in_plane = sky_with_plane(rng)
    return ra, dec, healpix_29(ra, dec), in_plane


@pytest.fixture(scope="module")
def tiles(sky):
    return Tiles.from_counts(histogram(sky[2], 8), 8, MAX_ROWS)


def test_histogram_counts_every_row(sky):
    counts = histogram(sky[2], 5)
    assert counts.shape == (n_pixels(5),)
    assert counts.sum() == sky[2].size
    brute = np.bincount(
        cdshealpix.nested.lonlat_to_healpix(sky[0] * u.deg, sky[1] * u.deg, 5).astype(np.int64),
        minlength=n_pixels(5),
    )
    np.testing.assert_array_equal(counts, brute)


def test_tiles_respect_max_rows_cover_all_rows_and_are_disjoint(sky, tiles):
    index = tiles.tile_index(sky[2])
    assert np.all(index >= 0)
    per_tile = np.bincount(index, minlength=len(tiles))
    np.testing.assert_array_equal(per_tile, tiles.row_counts)
    assert per_tile.min() > 0, "empty tiles are not listed"
    assert np.all((per_tile <= MAX_ROWS) | (tiles.orders == 8))
    assert np.all(tiles.starts29[1:] >= tiles.ends29[:-1])
    assert tiles.max_order == tiles.orders.max()


def test_tiles_equal_hats_generate_alignment(sky):
    counts = histogram(sky[2], 5)
    threshold = max(MAX_ROWS, int(counts.max()))
    alignment = generate_alignment(counts, highest_order=5, threshold=threshold)
    expected = {(int(a[0]), int(a[1]), int(a[2])) for a in alignment if a is not None}
    tiles = Tiles.from_counts(counts, 5, threshold)
    got = set(
        zip(tiles.orders.tolist(), tiles.pixels.tolist(), tiles.row_counts.tolist(), strict=True)
    )
    assert got == expected


def test_dense_plane_gets_smaller_tiles(sky, tiles):
    orders = tiles.orders[tiles.tile_index(sky[2])]
    in_plane = sky[3]
    assert np.median(orders[in_plane]) >= np.median(orders[~in_plane]) + 3


def test_max_and_min_order_bound_tile_orders(sky):
    capped = Tiles.from_counts(histogram(sky[2], 8), 8, 20, min_order=2, max_order=4)
    assert capped.orders.min() >= 2 and capped.max_order == 4
    assert np.any(capped.row_counts > 20), "tiles at max_order may exceed max_rows"
    assert np.all((capped.row_counts <= 20) | (capped.orders == 4))
    assert capped.row_counts.sum() == sky[2].size


def test_tile_index_equals_brute_force(sky, tiles):
    index = tiles.tile_index(sky[2])
    for i, (order, pixel) in enumerate(zip(tiles.orders, tiles.pixels, strict=True)):
        inside = (sky[2] >> (2 * (29 - order))) == pixel
        np.testing.assert_array_equal(np.flatnonzero(index == i), np.flatnonzero(inside))


def test_tile_index_is_minus_one_outside_the_tiles():
    tiles = Tiles(np.array([3, 1]), np.array([5, 20]))
    assert [tiles.order_pixel(i) for i in range(len(tiles))] == [(3, 5), (1, 20)]
    hp29 = np.array([5 << 52, (6 << 52) - 1, 6 << 52, 20 << 56, 0])
    np.testing.assert_array_equal(tiles.tile_index(hp29), [0, 0, -1, 1, -1])


def test_tiles_sort_breadth_first_and_round_trip():
    tiles = Tiles(np.array([2, 1, 0]), np.array([63, 3, 11]), np.array([7, 8, 9]))
    orders, pixels = tiles.to_arrays()
    np.testing.assert_array_equal(orders, [1, 2, 0])
    np.testing.assert_array_equal(pixels, [3, 63, 11])
    np.testing.assert_array_equal(tiles.row_counts, [8, 7, 9])
    assert tiles == Tiles(orders, pixels)


def test_overlapping_tiles_are_refused():
    with pytest.raises(ValueError, match=r"tiles must be disjoint: \(order 1, pixel 3\) overlaps"):
        Tiles(np.array([1, 2]), np.array([3, 12]))


def test_from_counts_checks_its_histogram():
    with pytest.raises(ValueError, match=r"must have 12 \* 4\*\*3 = 768 values, got shape \(10,\)"):
        Tiles.from_counts(np.zeros(10), 3, 100)
    with pytest.raises(ValueError, match="max_order <= histogram_order"):
        Tiles.from_counts(np.zeros(768), 3, 100, max_order=4)


def test_margin_search_order():
    assert margin_search_order(1.5) == 15
    assert margin_search_order(1800.0) == 4
    assert margin_search_order(3600.0) == 3
    assert margin_search_order(1e-5) == 29
    with pytest.raises(ValueError, match="margin_arcsec must be > 0, got 0"):
        margin_search_order(0.0)


def near_edge_points(tiles: Tiles, margin_arcsec: float, rng: np.random.Generator):
    """Points on tile boundaries (4 per side), at base-pixel corners and poles, jittered."""
    lon, lat = cdshealpix.nested.vertices(tiles.pixels, tiles.orders, step=4)
    ra = np.concatenate([lon.deg.ravel(), [0, 45, 90, 180, 270, 0, 0], rng.uniform(0, 360, 50)])
    dec = np.concatenate(
        [lat.deg.ravel(), [41.81, 0, -41.81, 90, -90, 89.99, -89.99], np.full(50, 89.9)]
    )
    jitter = rng.uniform(0, 1.5 * margin_arcsec, ra.size)
    return offset(ra, dec, jitter, rng.uniform(0, 2 * np.pi, ra.size))


@pytest.mark.parametrize("margin_arcsec", [10.0, 1800.0])
def test_margin_tiles_never_miss_a_tile_within_the_margin(tiles, margin_arcsec):
    rng = np.random.default_rng(int(margin_arcsec))
    ra, dec = near_edge_points(tiles, margin_arcsec, rng)
    hp29 = healpix_29(ra, dec)
    rows, found = tiles.margin_tile_indices(hp29, margin_arcsec)
    assert np.all(np.diff(rows) >= 0)
    got = set(zip(rows.tolist(), found.tolist(), strict=True))
    own = tiles.tile_index(hp29)
    assert all(own[r] != t for r, t in got)

    expected = set()
    for fraction in (0.25, 0.5, 0.75, 0.999):
        for angle in np.linspace(0, 2 * np.pi, 48, endpoint=False):
            other = tiles.tile_index(healpix_29(*offset(ra, dec, fraction * margin_arcsec, angle)))
            near = np.flatnonzero((other >= 0) & (other != own))
            expected |= set(zip(near.tolist(), other[near].tolist(), strict=True))
    assert expected, "the sample reaches other tiles"
    assert expected <= got
    # A superset, but a tight one: pairs are found for points near edges only.
    assert len(got) < 4 * len(expected)


def test_margin_tiles_empty_deep_inside_tiles(tiles):
    coarse = tiles.orders <= 3
    lon, lat = cdshealpix.nested.healpix_to_lonlat(tiles.pixels[coarse], tiles.orders[coarse])
    rows, found = tiles.margin_tile_indices(healpix_29(lon.deg, lat.deg), 10.0)
    assert rows.size == 0 and found.size == 0
