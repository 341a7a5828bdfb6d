import numpy as np
from astropy import units as u
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.time import Time
from astropy.utils import iers

from catalogs.time_scales import heliocentric_mjd

iers.conf.auto_download = False  # no network; the bundled tables cover these dates


def test_heliocentric_correction_matches_astropy_to_a_fifth_of_a_second():
    rng = np.random.default_rng(1)
    mjd = rng.uniform(58300, 59300, 50)
    ra = rng.uniform(0, 360, 50)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 50)))
    palomar = EarthLocation.from_geodetic(-116.8650 * u.deg, 33.3563 * u.deg, 1712 * u.m)
    times = Time(mjd, format="mjd", scale="utc", location=palomar)
    ltt = times.light_travel_time(SkyCoord(ra, dec, unit="deg"), kind="heliocentric")
    expected = mjd + ltt.to_value(u.day)
    got = heliocentric_mjd(mjd, ra, dec)
    # Geocentre vs Palomar adds at most ~21 ms; the low-precision Sun about 0.1 s.
    assert np.max(np.abs(got - expected)) * 86400 < 0.2
    assert np.max(np.abs(got - mjd)) * 86400 > 400  # the correction is up to ~8.3 min


def test_keeps_float64():
    out = heliocentric_mjd(np.array([59000.123456789]), [10.0], [20.0])
    assert out.dtype == np.float64
