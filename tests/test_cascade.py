"""The two-stage cascade: settled objects are confident constants, the rest are unchanged."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogs.schema import CARRIED_COLUMNS
from udfs.cascade import Cascade, take_lightcurves
from udfs.classifier import CLASS_NAMES, Classifier, ModelCard
from udfs.inference import StageTimes, classify_batch, flat_lightcurves
from udfs.lightcurve_cuts import apply_quality_cuts


@pytest.fixture(scope="module")
def kept_batch(sample_file):
    table = pq.read_table(sample_file).slice(0, 1200)
    table = table.append_column("source_file", pa.array([sample_file.name] * table.num_rows))
    table = table.append_column("source_row", pa.array(np.arange(table.num_rows)))
    cut = pa.Table.from_batches([apply_quality_cuts(table.combine_chunks().to_batches()[0], 20)])
    kept = cut.filter(cut.column("reject_reason").is_null())
    return kept.select([*CARRIED_COLUMNS, "lightcurve"]).combine_chunks().to_batches()[0]


@pytest.fixture(scope="module")
def classifier(model_dir):
    return Classifier.load(model_dir / "model.keras", ModelCard.read(model_dir))


def test_take_lightcurves_picks_whole_light_curves_in_order(kept_batch):
    flat = flat_lightcurves(kept_batch.column("lightcurve"))
    rows = np.array([5, 0, 3])
    some = take_lightcurves(flat, rows)
    assert some.offsets.size == 4
    for k, r in enumerate(rows):
        a, b = flat.offsets[r], flat.offsets[r + 1]
        c, d = some.offsets[k], some.offsets[k + 1]
        np.testing.assert_array_equal(some.t_days[c:d], flat.t_days[a:b])
        np.testing.assert_array_equal(some.mag[c:d], flat.mag[a:b])
        np.testing.assert_array_equal(some.channel[c:d], flat.channel[a:b])


def test_cascade_settles_confident_constants_and_leaves_the_rest_unchanged(kept_batch, classifier):
    cascade = Cascade(max_frequencies=5000, constant_probability=0.95)
    times = StageTimes()
    full = classify_batch(kept_batch, classifier, batch_size=64)
    fast = classify_batch(kept_batch, classifier, batch_size=64, times=times, cascade=cascade)
    p_full = np.column_stack([full.column(f"p_{c}").to_numpy() for c in CLASS_NAMES])
    p_fast = np.column_stack([fast.column(f"p_{c}").to_numpy() for c in CLASS_NAMES])
    changed = np.any(p_full != p_fast, axis=1)
    settled = p_fast[:, CLASS_NAMES.index("constant")] >= 0.95
    # Only settled objects can differ, and each is a confident constant.
    assert not (changed & ~settled).any()
    assert (
        fast.column("predicted_class").to_numpy(zero_copy_only=False)[changed] == "constant"
    ).all()
    # On the real DR5 field many objects are settled (here 47%, before the exposure-level cut),
    # with (almost) the same classes.
    assert changed.sum() <= times.n_settled <= settled.sum()
    assert times.n_settled > 0.3 * kept_batch.num_rows
    same = np.mean(
        full.column("predicted_class").to_pylist()
        == np.array(fast.column("predicted_class").to_pylist())
    )
    assert same >= 0.99
