"""udfs.inference without Spark: Arrow light curves in, probabilities out, with the real model."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from udfs.cascade import Cascade, take_lightcurves

from catalogs.schema import CARRIED_COLUMNS
from udfs.classifier import CLASS_NAMES, Classifier, ModelCard
from udfs.dmdt import dmdt_images
from udfs.inference import (
    StageTimes,
    classify_batch,
    flat_lightcurves,
    model_input_arrays,
    model_input_batch,
)
from udfs.lightcurve_cuts import CUT_SCHEMA, apply_quality_cuts


@pytest.fixture(scope="module")
def kept_batch(sample_file):
    table = pq.read_table(sample_file).slice(0, 400)
    table = table.append_column("source_file", pa.array([sample_file.name] * table.num_rows))
    table = table.append_column("source_row", pa.array(np.arange(table.num_rows)))
    cut = pa.Table.from_batches([apply_quality_cuts(table.combine_chunks().to_batches()[0], 20)])
    kept = cut.filter(cut.column("reject_reason").is_null())
    return kept.select([*CARRIED_COLUMNS, "lightcurve"]).combine_chunks().to_batches()[0]


@pytest.fixture(scope="module")
def classifier(model_dir):
    return Classifier.load(model_dir / "model.keras", ModelCard.read(model_dir))


def test_flat_lightcurves_follow_the_arrow_offsets(kept_batch):
    flat = flat_lightcurves(kept_batch.column("lightcurve"))
    t, offsets = flat.t_days, flat.offsets
    assert t.dtype == np.float64 and flat.channel.dtype == np.int8
    assert offsets[-1] == t.size == flat.mag.size == flat.magerr.size
    first = kept_batch.column("lightcurve")[1].as_py()
    np.testing.assert_array_equal(t[offsets[1] : offsets[2]], first["hmjd"])
    np.testing.assert_allclose(flat.magerr[offsets[1] : offsets[2]], first["magerr"])
    # A slice of the batch starts at a non-zero offset in the child arrays.
    sliced = flat_lightcurves(kept_batch.column("lightcurve").slice(1, 2))
    np.testing.assert_array_equal(
        sliced.t_days[sliced.offsets[0] : sliced.offsets[1]], first["hmjd"]
    )


def test_classify_batch_equals_inputs_then_model(kept_batch, classifier):
    card = classifier.card
    times = StageTimes()
    out = classify_batch(kept_batch, classifier, batch_size=64, times=times)
    assert out.num_rows == kept_batch.num_rows > 10
    assert times.n_objects == kept_batch.num_rows and times.inputs_s > 0
    flat = flat_lightcurves(kept_batch.column("lightcurve"))
    inputs = card.model_inputs(flat)
    images = dmdt_images(
        flat.t_days, flat.mag, flat.channel, flat.offsets, card.grid, 3, norm="mahabal"
    )
    np.testing.assert_array_equal(inputs["dmdt_image"], images)
    expected = classifier.predict(inputs, batch_size=64)
    got = np.column_stack([out.column(f"p_{c}").to_numpy() for c in CLASS_NAMES])
    np.testing.assert_array_equal(got, expected)
    assert out.column("objectid").equals(kept_batch.column("objectid"))
    assert out.column("predicted_class").to_pylist() == [
        CLASS_NAMES[k] for k in expected.argmax(axis=1)
    ]


def test_predictions_do_not_depend_on_batch_composition(kept_batch, classifier):
    # Bit-identical: the output must not depend on how Spark cuts partitions and batches.
    whole = classify_batch(kept_batch, classifier, batch_size=16)
    part = classify_batch(kept_batch.slice(5, 7), classifier, batch_size=16)
    for c in CLASS_NAMES:
        assert part.column(f"p_{c}").equals(whole.column(f"p_{c}").slice(5, 7))


def test_empty_batch(kept_batch, classifier):
    out = classify_batch(kept_batch.slice(0, 0), classifier)
    assert out.num_rows == 0
    assert out.schema.field("p_constant").type == pa.float32()
    assert set(CUT_SCHEMA.names) >= set(CARRIED_COLUMNS)


def test_model_input_batch_round_trips_through_arrow(kept_batch, classifier):
    card = classifier.card
    batch = kept_batch.slice(0, 12)
    arrow = model_input_batch(batch, card, ("objectid",))
    assert arrow.column("objectid").equals(batch.column("objectid"))
    back = model_input_arrays(pa.Table.from_batches([arrow]), card)
    expected = card.model_inputs(flat_lightcurves(batch.column("lightcurve")))
    assert set(back) == set(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(back[name], values)


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
    # On the real DR5 field many objects are settled (before the exposure-level cut), with
    # (almost) the same classes.
    assert changed.sum() <= times.n_settled <= settled.sum()
    assert times.n_settled > 0.3 * kept_batch.num_rows
    same = np.mean(
        full.column("predicted_class").to_pylist()
        == np.array(fast.column("predicted_class").to_pylist())
    )
    assert same >= 0.99
