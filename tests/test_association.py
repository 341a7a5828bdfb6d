import numpy as np
import pytest

from udfs.kernels.association import (
    arcsec_of_chord,
    assign_nearest,
    chord_of_arcsec,
    link_sources,
    mean_positions,
)

ARCSEC = 1 / 3600


def _sky(n_obj, n_cat, scatter_arcsec, rng, pair_sep_arcsec=None, ra_range=(41.0, 41.3)):
    ra0 = rng.uniform(*ra_range, n_obj)
    dec0 = rng.uniform(-26.7, -26.4, n_obj)
    if pair_sep_arcsec is not None:  # every second object a close companion of the one before
        ra0[1::2] = ra0[0::2] + pair_sep_arcsec * ARCSEC / np.cos(np.radians(dec0[0::2]))
        dec0[1::2] = dec0[0::2]
    ra, dec, cat, truth = [], [], [], []
    for c in range(n_cat):
        ra.append(ra0 + rng.normal(0, scatter_arcsec * ARCSEC, n_obj) / np.cos(np.radians(dec0)))
        dec.append(dec0 + rng.normal(0, scatter_arcsec * ARCSEC, n_obj))
        cat.append(np.full(n_obj, c))
        truth.append(np.arange(n_obj))
    return [np.concatenate(x) for x in (ra, dec, cat, truth)]


def _purity_completeness(groups, truth):
    pairs = set(zip(groups.tolist(), truth.tolist(), strict=True))
    by_group, by_truth = {}, {}
    for g, t in pairs:
        by_group.setdefault(g, set()).add(t)
        by_truth.setdefault(t, set()).add(g)
    impure = sum(len(v) > 1 for v in by_group.values())
    split = sum(len(v) > 1 for v in by_truth.values())
    return impure, split


@pytest.mark.parametrize("max_neighbours", [None, 8])
def test_close_pairs_seen_in_the_same_catalogs_never_merge(max_neighbours):
    rng = np.random.default_rng(0)
    ra, dec, cat, truth = _sky(600, 5, 0.1, rng, pair_sep_arcsec=1.6)
    ids = np.arange(ra.size) + 1000
    groups = link_sources(ra, dec, cat, ids, 1.5, max_neighbours=max_neighbours)
    assert _purity_completeness(groups, truth) == (0, 0)
    assert np.unique(groups).size == 600


def test_unconstrained_friends_of_friends_would_merge_them():
    # The same sky with every source in its own catalog: nothing forbids the merges.
    rng = np.random.default_rng(0)
    ra, dec, _, truth = _sky(600, 5, 0.1, rng, pair_sep_arcsec=1.6)
    groups = link_sources(ra, dec, np.arange(ra.size), np.arange(ra.size), 1.5)
    impure, _ = _purity_completeness(groups, truth)
    assert impure > 100


def test_group_is_named_by_its_smallest_id_whatever_the_input_order():
    rng = np.random.default_rng(1)
    ra, dec, cat, _ = _sky(50, 3, 0.1, rng)
    ids = rng.permutation(ra.size).astype(np.int64) * 7 + 3
    groups = link_sources(ra, dec, cat, ids, 1.5)
    order = rng.permutation(ra.size)
    shuffled = link_sources(ra[order], dec[order], cat[order], ids[order], 1.5)
    np.testing.assert_array_equal(shuffled, groups[order])
    for g in np.unique(groups):
        assert g == ids[groups == g].min()


def test_links_across_ra_zero():
    ra = np.array([359.99995, 0.00003, 180.0])
    dec = np.array([0.0, 0.0, 0.0])
    groups = link_sources(ra, dec, [0, 1, 2], [10, 11, 12], 1.5)
    assert groups.tolist() == [10, 10, 12]
    ids, mra, mdec = mean_positions(groups, ra, dec)
    assert ids.tolist() == [10, 12]
    assert min(mra[0], 360 - mra[0]) < 0.0001 and abs(mdec[0]) < 1e-9


def test_assign_nearest_within_radius():
    obj_ra, obj_dec = np.array([10.0, 10.0 + 3 * ARCSEC]), np.array([5.0, 5.0])
    ra = np.array([10.0 + 0.2 * ARCSEC, 10.0 + 2.9 * ARCSEC, 10.0 + 8 * ARCSEC])
    dec = np.array([5.0, 5.0, 5.0])
    index, dist = assign_nearest(obj_ra, obj_dec, ra, dec, 1.5)
    assert index.tolist() == [0, 1, -1]
    np.testing.assert_allclose(
        dist[:2], [0.2 * np.cos(np.radians(5)), 0.1 * np.cos(np.radians(5))], rtol=1e-6
    )
    assert np.isnan(dist[2])
    index, _ = assign_nearest([], [], ra, dec, 1.5)
    assert (index == -1).all()


def test_chord_and_arcsec_are_inverse():
    angles = np.array([0.0, 0.1, 1.5, 3600.0])
    np.testing.assert_allclose(arcsec_of_chord([chord_of_arcsec(a) for a in angles]), angles)
