"""Cadence augmentation: resampled copies of long light curves, deterministic and traceable."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from catalogs.schema import LIGHTCURVE_STRUCT
from udfs.cadence_augmentation import (
    CadenceAugmentation,
    augment_lightcurve_table,
    augmented_copies,
    copy_objectid,
    original_objectid,
)


def _crts_like(n_lc=5, seed=0):
    rng = np.random.default_rng(seed)
    nights = np.sort(rng.choice(np.arange(53500, 56400), 80, replace=False))
    t = np.concatenate([n + 0.3 + np.arange(4) * 0.007 for n in nights])  # 4 visits a night
    ts = [t.copy() for _ in range(n_lc)]
    offsets = np.arange(n_lc + 1) * t.size
    return np.concatenate(ts), offsets.astype(np.int64)


def test_copies_keep_a_window_one_epoch_a_night():
    t, offsets = _crts_like()
    aug = CadenceAugmentation(window_years=(2.0, 3.0), max_per_night=1, min_epochs=5)
    source, copy, copy_offsets, epochs = augmented_copies(
        np.arange(5) + 100, t, offsets, 2, seed=1, augmentation=aug
    )
    assert source.size == copy.size == copy_offsets.size - 1 and set(copy) <= {1, 2}
    for j in range(source.size):
        e = epochs[copy_offsets[j] : copy_offsets[j + 1]]
        lo, hi = offsets[source[j]], offsets[source[j] + 1]
        assert np.all((e >= lo) & (e < hi)) and np.all(np.diff(e) > 0)
        nights = np.floor(t[e])
        assert np.unique(nights).size == nights.size  # one per night
        assert t[e].max() - t[e].min() <= 3.0 * 365.25
    again = augmented_copies(np.arange(5) + 100, t, offsets, 2, seed=1, augmentation=aug)
    np.testing.assert_array_equal(again[3], epochs)


def test_short_light_curves_make_no_copy():
    t = np.arange(10, dtype=np.float64)
    source, _, copy_offsets, epochs = augmented_copies(
        np.array([1]), t, np.array([0, 10]), 3, seed=0
    )
    assert source.size == 0 and epochs.size == 0 and copy_offsets.tolist() == [0]


def test_table_copies_have_traceable_ids_and_all_fields():
    t, offsets = _crts_like(n_lc=3)
    n = t.size
    o = pa.array(offsets.astype(np.int32))
    lc = pa.StructArray.from_arrays(
        [
            pa.ListArray.from_arrays(o, pa.array(t)),
            pa.ListArray.from_arrays(o, pa.array(np.arange(n, dtype=np.float32))),
            pa.ListArray.from_arrays(o, pa.array(np.full(n, 0.1, np.float32))),
            pa.ListArray.from_arrays(o, pa.array(np.zeros(n, np.int8))),
        ],
        fields=list(LIGHTCURVE_STRUCT),
    )
    table = pa.table({"objectid": [7, 8, 9], "label": ["ew", "ea", "rrc"], "lightcurve": lc})
    copies = augment_lightcurve_table(table, 2, seed=3)
    assert copies.num_rows >= 3
    ids = copies.column("objectid").to_numpy()
    assert set(original_objectid(ids)) <= {7, 8, 9} and not set(ids) & {7, 8, 9}
    assert copy_objectid(7, 0) == 7
    for row in copies.to_pylist():
        source = int(original_objectid(row["objectid"]))
        k = [7, 8, 9].index(source)
        assert row["label"] == ["ew", "ea", "rrc"][k]
        # mag was the epoch index: the copy's epochs are the source's, in order.
        idx = np.asarray(row["lightcurve"]["mag"], dtype=np.int64)
        assert np.all((idx >= offsets[k]) & (idx < offsets[k + 1]))
        np.testing.assert_array_equal(row["lightcurve"]["hmjd"], t[idx])
