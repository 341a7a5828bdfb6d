"""udfs.model.band_dropout: copies with one band removed, reproducible per object."""

import numpy as np
import pyarrow as pa

from catalogs.schema import LIGHTCURVE_STRUCT
from udfs.model.band_dropout import VARIANT, band_dropped_copies


def _batch(n=200, epochs=30):
    rng = np.random.default_rng(0)
    bands = [np.tile([0, 1], epochs // 2) if k % 4 else np.zeros(epochs, int) for k in range(n)]
    rows = [
        {"hmjd": list(59000 + np.arange(epochs, dtype=float)),
         "mag": list(rng.normal(15, 0.1, epochs)), "magerr": [0.05] * epochs,
         "band": list(b)}
        for b in bands
    ]  # fmt: skip
    return pa.RecordBatch.from_arrays(
        [pa.array(np.arange(n, dtype=np.int64) * 7), pa.array(rows, LIGHTCURVE_STRUCT)],
        names=["objectid", "lightcurve"],
    )


def test_copies_lose_exactly_one_band_of_multiband_objects():
    batch = _batch()
    copies = band_dropped_copies(batch, 0.5, seed=1, min_epochs=10)
    assert 40 < copies.num_rows < 110 and copies.column(VARIANT).to_pylist() == [1] * len(copies)
    originals = {r["objectid"]: r["lightcurve"] for r in batch.to_pylist()}
    for row in copies.to_pylist():
        before = originals[row["objectid"]]
        assert len(set(before["band"])) == 2 and len(set(row["lightcurve"]["band"])) == 1
        kept_band = row["lightcurve"]["band"][0]
        keep = [i for i, b in enumerate(before["band"]) if b == kept_band]
        assert row["lightcurve"]["hmjd"] == [before["hmjd"][i] for i in keep]
        np.testing.assert_allclose(row["lightcurve"]["mag"], [before["mag"][i] for i in keep])


def test_choice_depends_on_object_not_on_batching():
    batch = _batch()
    whole = band_dropped_copies(batch, 0.5, seed=1, min_epochs=10).to_pylist()
    parts = band_dropped_copies(batch.slice(0, 77), 0.5, 1, 10).to_pylist()
    parts += band_dropped_copies(batch.slice(77), 0.5, 1, 10).to_pylist()
    assert whole == parts
    assert band_dropped_copies(batch, 0.0, 1, 10).num_rows == 0
    assert band_dropped_copies(batch, 1.0, 1, 16).num_rows == 0  # 15 epochs left < 16
