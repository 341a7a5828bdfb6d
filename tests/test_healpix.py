from pathlib import Path

import astropy.units as u
import cdshealpix.nested
import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import Latitude, Longitude

from catalogs.healpix import healpix_29, tile_of, tile_shift_bits


def test_healpix_29_equals_cdshealpix_and_is_int64():
    rng = np.random.default_rng(3)
    ra = rng.uniform(0, 360, 1000)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 1000)))
    expected = cdshealpix.nested.lonlat_to_healpix(Longitude(ra, u.deg), Latitude(dec, u.deg), 29)
    got = healpix_29(ra, dec)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected.astype(np.int64))


def test_healpix_29_is_the_hand_made_index_on_real_and_edge_positions():
    # hats' compute_spatial_index replaced cdshealpix on RA mod 360; both on the DR5 sample and
    # on RA 0/360, negative RA and the poles.
    dr5 = pq.read_table(next(Path("data/sample").glob("*.parquet")), columns=["objra", "objdec"])
    ra = np.concatenate([dr5["objra"].to_numpy(), [0.0, 360.0, -1e-9, 359.999999999, 720.5, 10]])
    dec = np.concatenate([dr5["objdec"].to_numpy(), [0.0, 0.0, 90.0, -90.0, 89.9999999, -45]])
    before = cdshealpix.nested.lonlat_to_healpix(
        Longitude(np.mod(ra, 360.0), unit=u.deg), Latitude(dec, unit=u.deg), 29
    )
    np.testing.assert_array_equal(healpix_29(ra, dec), before.astype(np.int64))


def test_healpix_29_wraps_ra_and_handles_empty():
    np.testing.assert_array_equal(healpix_29([361.0], [10.0]), healpix_29([1.0], [10.0]))
    assert healpix_29([], []).shape == (0,)


def test_tile_is_the_coarse_pixel_containing_the_position():
    ra, dec = np.array([41.6, 200.0, 359.9]), np.array([-26.5, 45.0, -89.0])
    for order in (0, 3, 6, 10):
        expected = cdshealpix.nested.lonlat_to_healpix(
            Longitude(ra, u.deg), Latitude(dec, u.deg), order
        )
        np.testing.assert_array_equal(tile_of(healpix_29(ra, dec), order), expected)
    assert tile_shift_bits(6) == 46


def test_tile_order_out_of_range():
    with pytest.raises(ValueError, match="tile order must be in 0..29"):
        tile_of([1], 30)


def test_healpix_29_is_bit_for_bit_hats_spatial_index():
    # The direct one-thread kernel call against hats' own `_healpix_29`, over the whole sphere,
    # RA far outside [0, 360) and the seams.
    from hats.pixel_math.spatial_index import compute_spatial_index

    rng = np.random.default_rng(29)
    ra = np.concatenate([rng.uniform(-720, 720, 200_000), [0.0, -0.0, 360.0, 1e-300, -1e-12]])
    dec = np.concatenate(
        [np.degrees(np.arcsin(rng.uniform(-1, 1, 200_000))), [90.0, -90.0, 0.0, 1e-300, 41.8]]
    )
    np.testing.assert_array_equal(healpix_29(ra, dec), compute_spatial_index(ra, dec, 29))


def test_healpix_29_refuses_positions_off_the_sky():
    with pytest.raises(ValueError, match=r"position 1 is not on the sky: ra=nan"):
        healpix_29([1.0, np.nan], [0.0, 0.0])
    with pytest.raises(ValueError, match=r"dec=91.0"):
        healpix_29([1.0], [91.0])
