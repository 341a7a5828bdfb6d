"""udfs.model.inference without Spark: Arrow light curves in, probabilities out (the real model)."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogs.schema import CARRIED_COLUMNS
from udfs.kernels.dmdt import dmdt_images
from udfs.kernels.lightcurve_cuts import CUT_SCHEMA, apply_quality_cuts
from udfs.kernels.model_inputs import FlatLightCurves
from udfs.model.classifier import CLASS_NAMES, Classifier, ModelCard
from udfs.model.inference import (
    StageTimes,
    classify_batch,
    flat_lightcurves,
    model_input_arrays,
    model_input_batch,
)
from udfs.model.transients import combine, head_features, row_offsets
from udfs.model.variability import stage_of
from udfs.simulators.noise_twins import REALISTIC, noise_twins


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
    best = expected.argmax(axis=1)
    if classifier.has_transients:  # the CNN's probabilities, beside the transient head's
        p_head = classifier.predict_transients(head_features(flat), batch_size=64)
        offsets = row_offsets(classifier.type_log_offsets, np.diff(flat.offsets))
        expected, p_transient, best = combine(expected, CLASS_NAMES, p_head, offsets)
        np.testing.assert_array_equal(out.column("p_transient").to_numpy(), p_transient)
    classes = classifier.output_classes
    got = np.column_stack([out.column(f"p_{c}").to_numpy() for c in classes])
    np.testing.assert_array_equal(got, expected)
    assert out.column("objectid").equals(kept_batch.column("objectid"))
    assert out.column("predicted_class").to_pylist() == [classes[k] for k in best]


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


def test_take_picks_whole_light_curves_in_order(kept_batch):
    flat = flat_lightcurves(kept_batch.column("lightcurve"))
    rows = np.array([5, 0, 3])
    some = flat.take(rows)
    assert some.offsets.size == 4
    for k, r in enumerate(rows):
        a, b = flat.offsets[r], flat.offsets[r + 1]
        c, d = some.offsets[k], some.offsets[k + 1]
        np.testing.assert_array_equal(some.t_days[c:d], flat.t_days[a:b])
        np.testing.assert_array_equal(some.mag[c:d], flat.mag[a:b])
        np.testing.assert_array_equal(some.channel[c:d], flat.channel[a:b])


def _probabilities(batch):
    return np.column_stack(
        [batch.column(f"p_{c}").to_numpy(zero_copy_only=False) for c in CLASS_NAMES]
    ).astype(np.float64)


def test_variability_stage_settles_constants_and_leaves_the_rest_to_the_network(
    kept_batch, classifier
):
    stage = stage_of(classifier.card)
    assert stage is not None and stage.settles and 0 < stage.threshold < 0.5
    times = StageTimes()
    network = classify_batch(kept_batch, classifier, batch_size=64)  # no stage at all
    off = classify_batch(kept_batch, classifier, 64, stage=stage_of(classifier.card, False))
    on = classify_batch(kept_batch, classifier, 64, times=times, stage=stage)
    # Off: every object's probabilities are the network's own, bit for bit; p_variable is there.
    np.testing.assert_array_equal(_probabilities(off), _probabilities(network))
    assert network.column("p_variable").null_count == network.num_rows
    p_variable = off.column("p_variable").to_numpy()
    np.testing.assert_array_equal(on.column("p_variable").to_numpy(), p_variable)
    assert not off.column("settled_as_constant").to_numpy(zero_copy_only=False).any()
    # On: objects below the threshold are settled as constant, the others are untouched.
    settled = on.column("settled_as_constant").to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(settled, p_variable < stage.threshold)
    assert times.n_settled == settled.sum() > 0.3 * kept_batch.num_rows
    p_on, p_net = _probabilities(on), _probabilities(network)
    np.testing.assert_array_equal(p_on[~settled], p_net[~settled])
    constant = CLASS_NAMES.index("constant")
    np.testing.assert_allclose(p_on[settled, constant], 1 - p_variable[settled], rtol=1e-6)
    others = np.delete(p_on[settled], constant, axis=1)
    assert np.isnan(others).all()  # null: the network did not run on them
    classes = np.asarray(on.column("predicted_class").to_pylist())
    assert (classes[settled] == "constant").all()
    np.testing.assert_array_equal(
        classes[~settled], np.asarray(network.column("predicted_class").to_pylist())[~settled]
    )


def test_noise_only_twins_of_the_dr5_field_are_mostly_settled(kept_batch, classifier):
    flat = flat_lightcurves(kept_batch.column("lightcurve"))
    twins = noise_twins(flat, REALISTIC, np.random.default_rng(3))
    assert isinstance(twins, FlatLightCurves)
    np.testing.assert_array_equal(twins.t_days, flat.t_days)
    stage = stage_of(classifier.card)
    p_twins = stage.p_variable(twins, 3)
    p_real = stage.p_variable(flat, 3)
    # About 9% of realistic twins pass (bench/variability.py); real stars pass more often.
    assert np.mean(p_twins >= stage.threshold) < 0.2
    assert np.mean(p_real >= stage.threshold) > np.mean(p_twins >= stage.threshold)
