"""udfs.inference without Spark: Arrow light curves in, probabilities out, with the real model."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from udfs.classifier import CLASS_NAMES, Classifier, ModelCard
from udfs.dmdt import dmdt_images
from udfs.inference import CARRIED_COLUMNS, StageTimes, classify_batch, flat_lightcurves
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
    t, mag, channel, offsets = flat_lightcurves(kept_batch.column("lightcurve"))
    assert t.dtype == np.float64 and channel.dtype == np.int8
    assert offsets[-1] == t.size == mag.size
    first = kept_batch.column("lightcurve")[1].as_py()
    np.testing.assert_array_equal(t[offsets[1] : offsets[2]], first["hmjd"])
    # A slice of the batch starts at a non-zero offset in the child arrays.
    t2, _, _, offsets2 = flat_lightcurves(kept_batch.column("lightcurve").slice(1, 2))
    np.testing.assert_array_equal(t2[offsets2[0] : offsets2[1]], first["hmjd"])


def test_classify_batch_equals_images_then_model(kept_batch, classifier):
    card = classifier.card
    times = StageTimes()
    out = classify_batch(kept_batch, classifier, card.grid, card.norm, batch_size=64, times=times)
    assert out.num_rows == kept_batch.num_rows > 10
    assert times.n_objects == kept_batch.num_rows and times.images_s > 0
    t, mag, channel, offsets = flat_lightcurves(kept_batch.column("lightcurve"))
    images = dmdt_images(t, mag, channel, offsets, card.grid, 3, norm="mahabal")
    expected = classifier.predict(images, batch_size=64)
    got = np.column_stack([out.column(f"p_{c}").to_numpy() for c in CLASS_NAMES])
    np.testing.assert_array_equal(got, expected)
    assert out.column("objectid").equals(kept_batch.column("objectid"))
    assert out.column("predicted_class").to_pylist() == [
        CLASS_NAMES[k] for k in expected.argmax(axis=1)
    ]


def test_predictions_do_not_depend_on_batch_composition(kept_batch, classifier):
    card = classifier.card
    # Bit-identical: the output must not depend on how Spark cuts partitions and batches.
    whole = classify_batch(kept_batch, classifier, card.grid, card.norm, batch_size=16)
    part = classify_batch(kept_batch.slice(5, 7), classifier, card.grid, card.norm, batch_size=16)
    for c in CLASS_NAMES:
        assert part.column(f"p_{c}").equals(whole.column(f"p_{c}").slice(5, 7))


def test_empty_batch(kept_batch, classifier):
    card = classifier.card
    out = classify_batch(kept_batch.slice(0, 0), classifier, card.grid, card.norm)
    assert out.num_rows == 0
    assert out.schema.field("p_constant").type == pa.float32()
    assert set(CUT_SCHEMA.names) >= set(CARRIED_COLUMNS)
