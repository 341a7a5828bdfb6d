"""dm-dt kernels against light-curve (an independent Rust implementation) and a naive numpy twin.

Point counts must agree exactly (zero difference) with both; the error-aware maps agree with
light-curve's ``gausses`` to float32 resolution: |ours - theirs| <= eps32 * max(1, theirs).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import light_curve
import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfs.kernels.dmdt import (
    MAX_EPOCHS_PER_LC,
    NORMS,
    DmDtGrid,
    _dm_cell,
    _dm_lookup_table,
    dmdt_counts,
    dmdt_counts_multiband,
    dmdt_epoch_counts,
    dmdt_images,
    normalize_counts,
)


def _dm_cells(dm, dm_edges, lut, inv_step):
    """Vector form of the kernel's ``_dm_cell``: -1 for dm outside [dm_edges[0], dm_edges[-1])."""
    inside = (dm >= dm_edges[0]) & (dm < dm_edges[-1])
    return np.array(
        [
            _dm_cell(d, dm_edges, lut, inv_step) if ok else -1
            for d, ok in zip(dm, inside, strict=True)
        ],
        dtype=np.int64,
    )


SAMPLE = Path(__file__).parents[1] / "data" / "sample" / "ztf_000250_zg_c01_q1_dr5.parquet"
EPS32 = float(np.finfo(np.float32).eps)
MINUTE_DAYS = 1.0 / 1440.0

GRIDS = {
    "mahabal2017": DmDtGrid.mahabal2017(),
    "scope": DmDtGrid.scope(),
    "loglin": DmDtGrid.log_linear(1.0 / 1440.0, 1500.0, 30, 2.0, 20),
}
HYPOTHESIS = settings(max_examples=100, deadline=None)


# ---------------------------------------------------------------- light curve generators


def _random_lc(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform times over 1500 days, wide magnitudes (many pairs fall outside the dm range)."""
    t = np.sort(rng.uniform(58000.0, 59500.0, n))
    return t, rng.normal(17.0, 1.5, n)


def _quantized_lc(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Times on a half-day lattice and magnitudes to 0.1 mag: many dt and dm exactly on edges."""
    t = 58000.0 + 0.5 * np.sort(rng.choice(3000, size=n, replace=False))
    return t, np.round(rng.normal(17.0, 0.8, n), 1)


def _ztf_like_lc(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """ZTF-like: yearly seasons, one visit a night, several same-night revisits minutes apart.

    Magnitudes go through float32 like the DR files. Times are strictly increasing (light-curve
    refuses equal times), so the length can come out slightly below ``n``.
    """
    if n == 0:
        return np.zeros(0), np.zeros(0)
    day = np.arange(58000, 59500)
    nights = day[(day - 58000) % 365.25 < 240]
    n_nights = max(1, min(nights.size, (2 * n) // 3))
    base = np.sort(rng.choice(nights, size=n_nights, replace=False)) + rng.uniform(0.15, 0.45)
    revisit = rng.choice(base, size=n - n_nights) + rng.integers(1, 4, size=n - n_nights) * (
        rng.uniform(20.0, 45.0, size=n - n_nights) * MINUTE_DAYS
    )
    t = np.unique(np.concatenate([base, revisit]))
    period_days = rng.uniform(0.2, 30.0)
    mag = 17.0 + 0.6 * np.sin(2 * np.pi * t / period_days) + rng.normal(0.0, 0.05, t.size)
    return t, mag.astype(np.float32).astype(np.float64)


GENERATORS = {"random": _random_lc, "quantized": _quantized_lc, "ztf_like": _ztf_like_lc}
LENGTHS = (0, 1, 2, 3, 5, 17, 60, 150, 400, 1000, 1, 0, 2)


def _batch(gen, rng, lengths=LENGTHS, n_channels=1):
    """Flat batch: (t, mag, magerr, channel, offsets); empty and 1-epoch light curves included."""
    ts, ms, cs = [], [], []
    for n in lengths:
        t, m = gen(rng, n)
        ts.append(t)
        ms.append(m)
        cs.append(rng.integers(0, n_channels, size=t.size))
    offsets = np.concatenate([[0], np.cumsum([t.size for t in ts])]).astype(np.int64)
    t = np.concatenate(ts)
    magerr = rng.uniform(0.0, 0.3, t.size)
    return t, np.concatenate(ms), magerr, np.concatenate(cs), offsets


# ---------------------------------------------------------------- references


def _naive_counts(t, m, grid):
    """np.histogram2d over all i < j pairs of the stably time-sorted light curve."""
    dt_edges, dm_edges = grid.dt_edges_days, grid.dm_edges_mag
    order = np.argsort(t, kind="stable")
    t, m = t[order], m[order]
    i, j = np.triu_indices(t.size, 1)
    dt = t[j] - t[i]
    dm = m[j] - m[i]
    # histogram2d closes its last bins; our cells are half-open, so drop pairs on the last edge.
    keep = (dt != dt_edges[-1]) & (dm != dm_edges[-1])
    h, _, _ = np.histogram2d(dm[keep], dt[keep], bins=[dm_edges, dt_edges])
    return h.astype(np.int64)


def _naive_multiband(t, m, channel, offsets, grid, n_channels):
    out = np.zeros((offsets.size - 1, *grid.shape, n_channels), dtype=np.int64)
    for k in range(offsets.size - 1):
        sl = slice(offsets[k], offsets[k + 1])
        for c in range(n_channels):
            sel = channel[sl] == c
            out[k, :, :, c] = _naive_counts(t[sl][sel], m[sl][sel], grid)
    return out


def _light_curve_dmdt(grid):
    return light_curve.DmDt(
        dt=grid.dt_edges_days, dm=grid.dm_edges_mag, dt_type="asis", dm_type="asis"
    )


def _brute_force_total(t, m, grid):
    order = np.argsort(t, kind="stable")
    t, m = t[order], m[order]
    (dt_lo, dt_hi), (dm_lo, dm_hi) = grid.dt_edges_days[[0, -1]], grid.dm_edges_mag[[0, -1]]
    total = 0
    for i in range(t.size):
        for j in range(i + 1, t.size):
            dt, dm = t[j] - t[i], m[j] - m[i]
            total += bool(dt_lo <= dt < dt_hi and dm_lo <= dm < dm_hi)
    return total


# ---------------------------------------------------------------- exact agreement


@pytest.mark.parametrize("gen_name", sorted(GENERATORS))
@pytest.mark.parametrize("grid_name", sorted(GRIDS))
def test_single_band_equals_light_curve_and_naive_twin(grid_name, gen_name):
    grid = GRIDS[grid_name]
    rng = np.random.default_rng(zlib.crc32(f"{grid_name}/{gen_name}".encode()))
    t, mag, _, _, offsets = _batch(GENERATORS[gen_name], rng)
    counts = dmdt_counts(t, mag, offsets, grid)
    assert counts.dtype == np.int32
    assert counts.shape == (offsets.size - 1, *grid.shape)
    dmdt = _light_curve_dmdt(grid)
    for k in range(offsets.size - 1):
        tk, mk = t[offsets[k] : offsets[k + 1]], mag[offsets[k] : offsets[k + 1]]
        np.testing.assert_array_equal(counts[k], _naive_counts(tk, mk, grid))
        if tk.size < 2:
            assert not counts[k].any()
            continue
        np.testing.assert_array_equal(counts[k], dmdt.points(tk, mk).T)


@pytest.mark.parametrize("grid_name", sorted(GRIDS))
def test_multiband_equals_light_curve_per_channel(grid_name):
    grid = GRIDS[grid_name]
    rng = np.random.default_rng(7)
    t, mag, _, channel, offsets = _batch(_ztf_like_lc, rng, n_channels=3)
    # A band with no epoch and a band with one epoch in some light curves.
    lc2 = slice(offsets[6], offsets[7])
    channel[lc2] = np.where(channel[lc2] == 2, 0, channel[lc2])
    channel[offsets[7]] = 2
    rest = slice(offsets[7] + 1, offsets[8])
    channel[rest] = np.where(channel[rest] == 2, 1, channel[rest])
    counts = dmdt_counts_multiband(t, mag, channel, offsets, grid, 3)
    assert counts.dtype == np.int32
    assert counts.shape == (offsets.size - 1, *grid.shape, 3)
    assert not counts[6, :, :, 2].any()
    assert not counts[7, :, :, 2].any()
    np.testing.assert_array_equal(counts, _naive_multiband(t, mag, channel, offsets, grid, 3))
    dmdt = _light_curve_dmdt(grid)
    for k in range(offsets.size - 1):
        sl = slice(offsets[k], offsets[k + 1])
        for c in range(3):
            sel = channel[sl] == c
            if sel.sum() >= 2:
                ref = dmdt.points(t[sl][sel], mag[sl][sel]).T
                np.testing.assert_array_equal(counts[k, :, :, c], ref)


def test_real_ztf_sample_equals_light_curve_and_naive_twin():
    table = pq.read_table(SAMPLE, columns=["hmjd", "mag", "catflags"]).slice(0, 600)
    hmjd = table.column("hmjd").combine_chunks()
    offsets = hmjd.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    # Real DR files store hmjd as float64; this copy has float32, widened here (as varsky does).
    t = hmjd.flatten().to_numpy().astype(np.float64)
    mag = table.column("mag").combine_chunks().flatten().to_numpy().astype(np.float64)
    good = table.column("catflags").combine_chunks().flatten().to_numpy() == 0
    channel = np.where(good, 0, -1)  # flagged epochs go to an ignored channel
    grid = GRIDS["mahabal2017"]
    counts = dmdt_counts_multiband(t, mag, channel, offsets, grid, 1)[..., 0]
    dmdt = _light_curve_dmdt(grid)
    n_compared = 0
    for k in range(offsets.size - 1):
        sl = slice(offsets[k], offsets[k + 1])
        tk, mk = t[sl][good[sl]], mag[sl][good[sl]]
        np.testing.assert_array_equal(counts[k], _naive_counts(tk, mk, grid))
        order = np.argsort(tk, kind="stable")
        if tk.size >= 2 and np.all(np.diff(tk[order]) > 0):
            np.testing.assert_array_equal(counts[k], dmdt.points(tk[order], mk[order]).T)
            n_compared += 1
    assert n_compared > 50


def test_unsorted_multiband_with_ties_equals_naive_twin():
    grid = GRIDS["scope"]
    rng = np.random.default_rng(11)
    t, mag, _, channel, offsets = _batch(_quantized_lc, rng, n_channels=2)
    t = np.round(t / 5.0) * 5.0  # many equal times
    for k in range(offsets.size - 1):
        perm = offsets[k] + rng.permutation(offsets[k + 1] - offsets[k])
        t[offsets[k] : offsets[k + 1]] = t[perm]
        mag[offsets[k] : offsets[k + 1]] = mag[perm]
    counts = dmdt_counts_multiband(t, mag, channel, offsets, grid, 2)
    np.testing.assert_array_equal(counts, _naive_multiband(t, mag, channel, offsets, grid, 2))


def test_channel_codes_outside_range_are_ignored():
    grid = GRIDS["mahabal2017"]
    rng = np.random.default_rng(3)
    t, mag, _, channel, offsets = _batch(_random_lc, rng, n_channels=2)
    noisy = np.where(rng.random(t.size) < 0.2, rng.choice([-1, 2, 7, 300], size=t.size), channel)
    expected = _naive_multiband(t, mag, noisy, offsets, grid, 2)
    np.testing.assert_array_equal(dmdt_counts_multiband(t, mag, noisy, offsets, grid, 2), expected)
    np.testing.assert_array_equal(
        dmdt_epoch_counts(noisy, offsets, 2),
        [[np.sum(noisy[offsets[k] : offsets[k + 1]] == c) for c in range(2)] for k in range(13)],
    )


@pytest.mark.parametrize("grid_name", sorted(GRIDS))
def test_dm_lookup_table_equals_binary_search(grid_name):
    edges = GRIDS[grid_name].dm_edges_mag
    _check_dm_lookup(edges)


def test_tiny_cell_falls_back_to_binary_search():
    edges = np.array([-10.0, 0.0, 1e-7, 2e-7, 10.0])  # a table would exceed 65536 entries
    lut, _ = _dm_lookup_table(edges)
    assert lut.size == 0
    _check_dm_lookup(edges)


def test_dm_lookup_table_at_its_largest():
    # Narrowest cell just wide enough for a table of at most 65536 entries: one correction
    # each way must still be exact.
    width = 20.0
    narrow = 2 * width / ((1 << 16) - 2)
    edges = np.array([-10.0, 0.0, narrow, 2 * narrow, 10.0])
    lut, _ = _dm_lookup_table(edges)
    assert 0 < lut.size <= 1 << 16
    _check_dm_lookup(edges)


def _check_dm_lookup(edges):
    rng = np.random.default_rng(5)
    dm = np.concatenate(
        [
            edges,
            np.nextafter(edges, -np.inf),
            np.nextafter(edges, np.inf),
            rng.uniform(edges[0] - 1, edges[-1] + 1, 20_000),
        ]
    )
    lut, inv_step = _dm_lookup_table(edges)
    expected = np.searchsorted(edges, dm, side="right") - 1
    expected[(dm < edges[0]) | (dm >= edges[-1])] = -1
    np.testing.assert_array_equal(_dm_cells(dm, edges, lut, inv_step), expected)


# ---------------------------------------------------------------- equal times and sorting


def test_equal_times_count_in_first_dt_cell_later_in_input_minus_earlier():
    grid = DmDtGrid.from_edges([0.0, 1.0, 10.0], [-1.0, -0.1, 0.0, 0.1, 1.0])
    t = np.array([5.0, 5.0])
    up = dmdt_counts(t, np.array([17.0, 17.2]), [0, 2], grid)[0]
    down = dmdt_counts(t, np.array([17.2, 17.0]), [0, 2], grid)[0]
    assert up[3, 0] == 1 and up.sum() == 1  # dm = +0.2 in [0.1, 1), dt = 0 in [0, 1)
    assert down[0, 0] == 1 and down.sum() == 1  # dm = -0.2 in [-1, -0.1)
    # Unsorted input: the stable sort keeps the two epochs at t = 0 in input order.
    c = dmdt_counts(np.array([0.5, 0.0, 0.0]), np.array([17.1, 17.0, 17.2]), [0, 3], grid)[0]
    assert c[3, 0] == 2  # (0.0, 17.0) -> (0.0, 17.2) and (0.0, 17.0) -> (0.5, 17.1)
    assert c[1, 0] == 1  # (0.0, 17.2) -> (0.5, 17.1): dm = -0.1 in [-0.1, 0)
    shifted = DmDtGrid.from_edges([1e-3, 1.0], [-1.0, 1.0])
    assert dmdt_counts(t, np.array([17.0, 17.2]), [0, 2], shifted).sum() == 0


# ---------------------------------------------------------------- hypothesis properties

_times = st.one_of(
    st.floats(58000.0, 62500.0, allow_nan=False),
    st.sampled_from([58000.0, 58000.5, 58001.5]),  # ties and edge-exact dt
)
_mags = st.one_of(st.floats(5.0, 25.0, allow_nan=False), st.sampled_from([17.0, 17.5, 18.0]))
_epochs = st.lists(st.tuples(_times, _mags), max_size=40)


@HYPOTHESIS
@given(epochs=_epochs, grid_name=st.sampled_from(sorted(GRIDS)))
def test_total_equals_brute_force_in_grid_pairs(epochs, grid_name):
    grid = GRIDS[grid_name]
    t = np.array([e[0] for e in epochs], dtype=np.float64)
    m = np.array([e[1] for e in epochs], dtype=np.float64)
    counts = dmdt_counts(t, m, [0, t.size], grid)
    assert counts.sum() == _brute_force_total(t, m, grid)
    np.testing.assert_array_equal(counts[0], _naive_counts(t, m, grid))


@HYPOTHESIS
@given(epochs=st.lists(st.tuples(_times, _mags), max_size=1), n_channels=st.integers(1, 3))
def test_zero_or_one_epoch_gives_zeros(epochs, n_channels):
    t = np.array([e[0] for e in epochs], dtype=np.float64)
    m = np.array([e[1] for e in epochs], dtype=np.float64)
    grid = GRIDS["mahabal2017"]
    channel = np.zeros(t.size, dtype=np.int8)
    counts = dmdt_counts_multiband(t, m, channel, [0, t.size], grid, n_channels)
    assert counts.shape == (1, *grid.shape, n_channels) and not counts.any()
    assert not dmdt_images(t, m, channel, [0, t.size], grid, n_channels).any()


def test_empty_batch():
    grid = GRIDS["mahabal2017"]
    empty = np.zeros(0)
    assert dmdt_counts(empty, empty, [0], grid).shape == (0, 22, 24)
    assert dmdt_images(empty, empty, np.zeros(0, np.int8), [0], grid, 3).shape == (0, 22, 24, 3)


@st.composite
def _shuffled(draw):
    epochs = draw(_epochs)
    perm = draw(st.permutations(range(len(epochs))))
    channel = draw(st.lists(st.integers(0, 1), min_size=len(epochs), max_size=len(epochs)))
    return epochs, perm, channel


@HYPOTHESIS
@given(case=_shuffled())
def test_unsorted_equals_sorted(case):
    epochs, perm, channel = case
    t = np.array([e[0] for e in epochs], dtype=np.float64)[perm]
    m = np.array([e[1] for e in epochs], dtype=np.float64)[perm]
    c = np.array(channel, dtype=np.int64)[perm]
    order = np.argsort(t, kind="stable")  # sorting keeps equal times in input order
    grid = GRIDS["scope"]
    shuffled = dmdt_counts_multiband(t, m, c, [0, t.size], grid, 2)
    ordered = dmdt_counts_multiband(t[order], m[order], c[order], [0, t.size], grid, 2)
    np.testing.assert_array_equal(shuffled, ordered)


@HYPOTHESIS
@given(
    n=st.integers(1, 30),
    data=st.data(),
    param=st.sampled_from(["t", "mag"]),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_non_finite_rejected_with_count_and_first_index(n, data, param, bad):
    index = data.draw(st.integers(0, n - 1))
    arrays = {"t": np.linspace(58000.0, 58100.0, n), "mag": np.full(n, 17.0)}
    arrays[param][index] = bad
    arrays[param][n - 1] = bad  # a second bad value after the first (or the same one)
    n_bad = 1 if index == n - 1 else 2
    with pytest.raises(ValueError, match=rf"{param} has {n_bad} non-finite .* index {index} "):
        dmdt_counts(arrays["t"], arrays["mag"], [0, n], GRIDS["mahabal2017"])


@HYPOTHESIS
@given(n=st.integers(0, 20))
def test_float32_times_rejected(n):
    t = np.linspace(58000.0, 58100.0, n).astype(np.float32)
    with pytest.raises(TypeError, match="t must be float64 days, got dtype float32"):
        dmdt_counts(t, np.zeros(n), [0, n], GRIDS["mahabal2017"])


def test_input_errors():
    grid = GRIDS["mahabal2017"]
    t = np.linspace(58000.0, 58010.0, 4)
    with pytest.raises(ValueError, match="offsets must be 1-D, start at 0 and end at len"):
        dmdt_counts(t, np.zeros(4), [0, 3], grid)
    with pytest.raises(ValueError, match="offsets must be non-decreasing"):
        dmdt_counts(t, np.zeros(4), [0, 3, 1, 4], grid)
    with pytest.raises(ValueError, match="t and mag must be 1-D of equal length"):
        dmdt_counts(t, np.zeros(3), [0, 4], grid)
    with pytest.raises(TypeError, match="offsets must be integers, got dtype float64"):
        dmdt_counts(t, np.zeros(4), np.array([0.0, 4.0]), grid)
    with pytest.raises(ValueError, match="light curve 1 has 65537 epochs, more than 65536"):
        n = MAX_EPOCHS_PER_LC + 1
        dmdt_counts(np.zeros(n + 1), np.zeros(n + 1), [0, 1, n + 1], grid)
    with pytest.raises(ValueError, match="offsets must be 1-D, start at 0 and end at len"):
        dmdt_epoch_counts(np.zeros(4, np.int8), [0, 5], 1)
    with pytest.raises(TypeError, match="channel must be integers"):
        dmdt_counts_multiband(t, np.zeros(4), np.zeros(4), [0, 4], grid, 1)
    with pytest.raises(ValueError, match="n_channels must be in 1..127"):
        dmdt_counts_multiband(t, np.zeros(4), np.zeros(4, np.int8), [0, 4], grid, 0)


# ---------------------------------------------------------------- normalisation


def _tiny_case():
    """Four epochs, six pairs, three of them outside the grid (dt >= 10 d)."""
    grid = DmDtGrid.from_edges([0.0, 1.0, 10.0], [-1.0, 0.0, 1.0], "tiny")
    t = np.array([0.0, 0.5, 2.0, 20.0, 0.0, 1.0, 3.0])
    mag = np.array([0.0, 0.2, 0.5, 5.0, 0.0, 0.1, 0.2])
    # Light curve 0: channel 0 has the four epochs above, channel 1 one epoch (no pair).
    # Light curve 1: channel 0 two epochs (one pair, in the grid), channel 1 none.
    channel = np.array([0, 0, 0, 0, 1, 0, 0])
    offsets = np.array([0, 5, 7])
    return grid, t, mag, channel, offsets


def test_mahabal_norm_by_hand_counts_out_of_grid_pairs():
    grid, t, mag, channel, offsets = _tiny_case()
    counts = dmdt_counts_multiband(t, mag, channel, offsets, grid, 2)
    # Pairs in the grid: (0, 1) dt 0.5 dm 0.2; (0, 2) dt 2 dm 0.5; (1, 2) dt 1.5 dm 0.3.
    np.testing.assert_array_equal(counts[0, :, :, 0], [[0, 0], [1, 2]])
    n_epochs = dmdt_epoch_counts(channel, offsets, 2)
    np.testing.assert_array_equal(n_epochs, [[4, 1], [2, 0]])
    img = dmdt_images(t, mag, channel, offsets, grid, 2, norm="mahabal")
    assert img.dtype == np.uint8
    # n = 4 epochs: 6 pairs. floor(255 * 1 / 6 + 0.99999) = 43, floor(255 * 2 / 6 + 0.99999) = 85.
    np.testing.assert_array_equal(img[0, :, :, 0], [[0, 0], [43, 85]])
    np.testing.assert_array_equal(img[1, :, :, 0], [[0, 0], [0, 255]])  # 1 pair of 1
    assert not img[:, :, :, 1].any()  # channels with < 2 epochs stay zero
    np.testing.assert_array_equal(normalize_counts(counts, "mahabal", n_epochs), img)


def test_mahabal_norm_formula_on_a_batch():
    grid = GRIDS["loglin"]  # +-2 mag: many pairs fall outside the grid
    t, mag, _, channel, offsets = _batch(_random_lc, np.random.default_rng(2), n_channels=3)
    counts = dmdt_counts_multiband(t, mag, channel, offsets, grid, 3)
    n = dmdt_epoch_counts(channel, offsets, 3).astype(np.float64)[:, None, None, :]
    n_pairs = n * (n - 1) / 2
    assert (counts.sum(axis=(1, 2)) < n_pairs[:, 0, 0, :]).sum() > 10  # out-of-grid pairs
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(n_pairs > 0, np.floor(255 * counts / n_pairs + 0.99999), 0)
    img = dmdt_images(t, mag, channel, offsets, grid, 3)
    np.testing.assert_array_equal(img, expected.astype(np.uint8))
    assert (img[counts > 0] >= 1).all() and not img[counts == 0].any()


def test_none_norm_is_the_counts():
    grid = GRIDS["scope"]
    t, mag, _, channel, offsets = _batch(_ztf_like_lc, np.random.default_rng(4), n_channels=2)
    counts = dmdt_counts_multiband(t, mag, channel, offsets, grid, 2)
    img = dmdt_images(t, mag, channel, offsets, grid, 2, "none")
    assert img.dtype == np.float32 and counts.sum() > 0
    np.testing.assert_array_equal(img, counts)
    np.testing.assert_array_equal(normalize_counts(counts, "none"), img)


def test_norm_errors():
    counts = np.zeros((1, 2, 2, 1), dtype=np.int32)
    with pytest.raises(ValueError, match="norm='mahabal' needs n_epochs"):
        normalize_counts(counts)
    with pytest.raises(ValueError, match="unknown dm-dt norm 'sqrt'"):
        normalize_counts(counts, "sqrt")
    with pytest.raises(ValueError, match=r"n_epochs must have shape \(1, 1\)"):
        normalize_counts(counts, "mahabal", [3])
    with pytest.raises(ValueError, match="n_epochs gives fewer pairs than counted"):
        normalize_counts(counts + 1, "mahabal", [[2]])
    with pytest.raises(ValueError, match="unknown dm-dt norm 'l2'"):
        normalize_counts(counts, "l2")
    assert set(NORMS) == {"mahabal", "none"}


# ---------------------------------------------------------------- grids


def test_named_grids_round_trip():
    assert DmDtGrid.named("mahabal2017").shape == (22, 24)
    assert DmDtGrid.named("scope").shape == (26, 26)
    for name in ("mahabal2017", "scope"):
        grid = DmDtGrid.named(name)
        assert grid.name == name
        again = DmDtGrid.from_edges(grid.dt_edges_days, grid.dm_edges_mag, grid.name)
        assert again == grid and hash(again) == hash(grid)
    assert DmDtGrid.mahabal2017() != DmDtGrid.scope()
    assert GRIDS["loglin"].shape == (20, 30)
    assert GRIDS["loglin"].dt_edges_days[0] == 0


def test_grid_validation_errors():
    with pytest.raises(ValueError, match="dt_edges_days: edges must be strictly increasing"):
        DmDtGrid.from_edges([0.0, 1.0, 1.0], [-1.0, 1.0])
    with pytest.raises(
        ValueError, match=r"dm_edges_mag: edges must be strictly increasing, got edge 2"
    ):
        DmDtGrid.from_edges([0.0, 1.0], [-1.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="dt_edges_days: first edge must be >= 0, got -1.0"):
        DmDtGrid.from_edges([-1.0, 1.0], [-1.0, 1.0])
    with pytest.raises(ValueError, match="need a 1-D array of at least 2 edges"):
        DmDtGrid.from_edges([0.0], [-1.0, 1.0])
    with pytest.raises(ValueError, match="edges must be finite"):
        DmDtGrid.from_edges([0.0, np.inf], [-1.0, 1.0])
    with pytest.raises(ValueError, match="unknown dm-dt grid 'crts'"):
        DmDtGrid.named("crts")
    with pytest.raises(ValueError, match="need 0 < dt_min_days < dt_max_days"):
        DmDtGrid.log_linear(0.0, 10.0, 5, 1.0, 4)
    with pytest.raises(ValueError, match="need n_dt >= 2 and n_dm >= 1"):
        DmDtGrid.log_linear(0.1, 10.0, 1, 1.0, 4)


def test_equalized_grid_equalises_pair_counts():
    from udfs.kernels.dmdt import DmDtGrid, dmdt_counts

    rng = np.random.default_rng(4)
    n_lc, n = 40, 60
    t = np.concatenate([np.sort(rng.uniform(0, 1000, n)) for _ in range(n_lc)])
    mag = 15 + rng.normal(0, 0.3, t.size)
    offsets = np.arange(n_lc + 1, dtype=np.int64) * n
    grid = DmDtGrid.equalized(t, mag, offsets, n_dt=8, n_dm=6, pairs_per_lightcurve=10**6)
    assert grid.shape == (6, 8) and grid.name == "equalized" and grid.dt_edges_days[0] == 0.0
    counts = dmdt_counts(t, mag, offsets, grid).sum(axis=0)
    per_dt = counts.sum(axis=0)
    per_dm = counts.sum(axis=1)
    total = n_lc * n * (n - 1) // 2
    assert per_dt.sum() == per_dm.sum() == total  # every pair inside the grid
    np.testing.assert_allclose(per_dt / total, 1 / 8, atol=0.002)
    np.testing.assert_allclose(per_dm / total, 1 / 6, atol=0.002)
    again = DmDtGrid.equalized(t, mag, offsets, n_dt=8, n_dm=6, pairs_per_lightcurve=10**6)
    assert again == grid


def test_equalized_grid_needs_pairs():
    from udfs.kernels.dmdt import DmDtGrid

    with pytest.raises(ValueError, match="no light curve has two epochs"):
        DmDtGrid.equalized(np.array([1.0]), np.array([15.0]), np.array([0, 1]))
