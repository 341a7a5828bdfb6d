"""Light-curve building: which epochs are kept, which are duplicates, in what order."""

import numpy as np
import pyarrow as pa
import pytest

from udfs.kernels.lightcurve_building import (
    BUILD_INPUT_COLUMNS,
    _epochs_and_duplicates,
    _epochs_and_duplicates_general,
    build_lightcurves_and_duplicate_rows,
)


def _detections(rng, n=4_000, n_objects=60):
    """Detections with exact repeats (new detids), repeated detids and same-time distinct rows."""
    obj = rng.integers(0, n_objects, n).astype(np.int64) * 1_000 + 7
    t = 59_000.0 + np.round(rng.uniform(0, 30, n), 1)  # coarse: many (object, time) ties
    band = rng.integers(0, 3, n).astype(np.int8)
    mag = np.round(rng.uniform(15, 16, n), 1).astype(np.float32)
    copies = rng.choice(n, n // 10, replace=False)  # exact repeats under new detids
    obj, t, band, mag = (np.concatenate([a, a[copies]]) for a in (obj, t, band, mag))
    detid = rng.permutation(10 * obj.size)[: obj.size].astype(np.int64)
    return obj, detid, t, band, mag


def test_one_sort_path_keeps_and_rejects_what_the_general_rule_does():
    rng = np.random.default_rng(3)
    obj, detid, t, band, mag = _detections(rng)
    keep, dups = _epochs_and_duplicates(obj, detid, t, band, mag)
    want_keep, want_dups = _epochs_and_duplicates_general(obj, detid, t, band, mag)
    assert dups.size >= 400  # at least the copies: the check means something
    np.testing.assert_array_equal(keep, want_keep)
    np.testing.assert_array_equal(dups, want_dups)
    assert keep.size + dups.size == obj.size
    # Kept epochs in (object, time, detid) order, and no measurement kept twice.
    np.testing.assert_array_equal(keep, keep[np.lexsort((detid[keep], t[keep], obj[keep]))])
    measurement = set(zip(obj[keep], band[keep], t[keep], mag[keep], strict=True))
    assert len(measurement) == keep.size


def test_a_repeated_detid_is_a_duplicate_however_it_differs():
    rng = np.random.default_rng(4)
    obj, detid, t, band, mag = _detections(rng, n=500)
    detid[100:110] = detid[:10]  # the same detections again, moved and remeasured
    mag[100:110] += 0.5
    keep, dups = _epochs_and_duplicates(obj, detid, t, band, mag)
    assert np.unique(detid[keep]).size == keep.size
    assert np.isin(detid[dups], detid[:10]).sum() >= 10
    assert keep.size + dups.size == obj.size


@pytest.mark.parametrize("positions", [True, False])
def test_light_curves_hold_every_kept_epoch(positions):
    rng = np.random.default_rng(5)
    obj, detid, t, band, mag = _detections(rng, n=1_000)
    n = obj.size
    table = pa.table(
        {
            "objectid": obj,
            "detid": detid,
            "ra": rng.uniform(10, 10.01, n),
            "dec": rng.uniform(20, 20.01, n),
            "hmjd": t,
            "band": band,
            "mag": mag,
            "magerr": np.full(n, 0.02, np.float32),
            "flags": np.zeros(n, np.int32),
            "source_ids": pa.nulls(n, pa.int64()),
        }
    ).select(list(BUILD_INPUT_COLUMNS))
    lcs, dups = build_lightcurves_and_duplicate_rows(table, positions=positions)
    assert int(np.sum(lcs.column("n_epochs").to_numpy())) + dups.size == n
    assert lcs.column("ra").null_count == (0 if positions else lcs.num_rows)
    times = lcs.column("lightcurve").combine_chunks().field("hmjd")
    for row in range(lcs.num_rows):
        values = times[row].values.to_numpy()
        assert np.all(np.diff(values) >= 0)
