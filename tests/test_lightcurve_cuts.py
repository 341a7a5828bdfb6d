import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogs.healpix import healpix_29
from catalogs.schema import RejectReason
from udfs.kernels.lightcurve_cuts import CUT_SCHEMA, apply_quality_cuts

NAN, INF = float("nan"), float("inf")


def _batch(rows: list[dict]) -> pa.RecordBatch:
    base = {
        "objectid": 1,
        "filterid": 1,
        "fieldid": 250,
        "rcid": 0,
        "objra": 41.5,
        "objdec": -26.5,
        "source_file": "f.parquet",
    }
    full = [{**base, "source_row": i, **r} for i, r in enumerate(rows)]
    schema = pa.schema(
        [
            ("objectid", pa.int64()),
            ("filterid", pa.int32()),
            ("fieldid", pa.int32()),
            ("rcid", pa.int32()),
            ("objra", pa.float64()),
            ("objdec", pa.float64()),
            ("hmjd", pa.list_(pa.float64())),
            ("mag", pa.list_(pa.float64())),
            ("magerr", pa.list_(pa.float64())),
            ("catflags", pa.list_(pa.int32())),
            ("source_file", pa.string()),
            ("source_row", pa.int64()),
        ]
    )
    return pa.RecordBatch.from_pylist(full, schema=schema)


def _lc(n, start=58000.0, flags=None, mag=None):
    t = [start + 1.5 * k for k in range(n)]
    return {
        "hmjd": t,
        "mag": mag if mag is not None else [18.0 + 0.1 * (k % 3) for k in range(n)],
        "magerr": [0.05] * n,
        "catflags": flags if flags is not None else [0] * n,
    }


def test_epoch_cuts_count_flagged_and_nonfinite_separately():
    lc = _lc(6, flags=[0, 32768, 0, 0, 0, 1], mag=[18, 18, NAN, INF, 18, NAN])
    out = apply_quality_cuts(_batch([{**lc}]), min_epochs=2).to_pylist()[0]
    assert out["n_epochs_in"] == 6
    assert out["n_epochs_flagged"] == 2  # catflags != 0, whatever the magnitude
    assert out["n_epochs_nonfinite"] == 2  # unflagged NaN and inf
    assert out["n_good"] == out["n_good_g"] == 2
    assert out["reject_reason"] is None
    assert out["lightcurve"]["mag"] == [18.0, 18.0]
    assert out["lightcurve"]["hmjd"] == [58000.0, 58006.0]


def test_row_rejects_each_get_their_reason_and_rows_balance():
    rows = [
        {**_lc(5)},  # kept
        {**_lc(2)},  # too few
        {**_lc(5), "objectid": None},
        {**_lc(5), "filterid": 7},
        {**_lc(5), "objdec": 95.0},
        {**_lc(5), "objra": NAN},
        {**_lc(5), "mag": [18.0] * 4},  # one value short
        {**_lc(5), "catflags": [0] * 6},
    ]
    out = apply_quality_cuts(_batch(rows), min_epochs=3)
    reasons = out.column("reject_reason").to_pylist()
    assert reasons == [
        None,
        RejectReason.TOO_FEW_EPOCHS,
        RejectReason.NULL_OBJECTID,
        RejectReason.BAD_FILTERID,
        RejectReason.BAD_COORDINATES,
        RejectReason.BAD_COORDINATES,
        RejectReason.LENGTH_MISMATCH,
        RejectReason.LENGTH_MISMATCH,
    ]
    assert out.num_rows == len(rows)
    assert out.column("source_row").to_pylist() == list(range(len(rows)))
    lcs = out.column("lightcurve").to_pylist()
    assert lcs[0] is not None and all(lc is None for lc in lcs[1:])
    assert out.schema == CUT_SCHEMA


def test_length_mismatch_does_not_shift_the_epochs_of_later_rows():
    rows = [{**_lc(5), "mag": [17.0] * 7}, {**_lc(4, start=59000.0), "mag": [19, 19.5, 20, 20.5]}]
    out = apply_quality_cuts(_batch(rows), min_epochs=2).to_pylist()
    assert out[0]["reject_reason"] == RejectReason.LENGTH_MISMATCH
    assert out[1]["lightcurve"]["mag"] == [19, 19.5, 20, 20.5]
    assert out[1]["lightcurve"]["hmjd"][0] == 59000.0


def test_epochs_sorted_by_time_and_bands_follow_filterid():
    lc = {"hmjd": [58010.0, 58000.0, 58005.0], "mag": [3.0, 1.0, 2.0], "magerr": [0.1] * 3}
    row = {**lc, "catflags": [0, 0, 0], "filterid": 2}
    out = apply_quality_cuts(_batch([row]), min_epochs=2).to_pylist()[0]
    assert out["lightcurve"]["hmjd"] == [58000.0, 58005.0, 58010.0]
    assert out["lightcurve"]["mag"] == [1.0, 2.0, 3.0]
    assert out["lightcurve"]["band"] == [1, 1, 1]
    assert (out["n_good_g"], out["n_good_r"], out["n_good_i"]) == (0, 3, 0)


def test_healpix_matches_catalogs_healpix():
    out = apply_quality_cuts(_batch([{**_lc(3), "objra": 200.25, "objdec": 12.5}]), 2)
    assert out.column("_healpix_29")[0].as_py() == healpix_29([200.25], [12.5])[0]


def test_times_keep_float64_precision():
    # Two epochs 30 s apart at MJD 59000: float32 would merge them (spacing ~ 4 min).
    t = [59000.0, 59000.0 + 30 / 86400]
    row = {"hmjd": t, "mag": [18.0, 18.1], "magerr": [0.1, 0.1], "catflags": [0, 0]}
    out = apply_quality_cuts(_batch([row]), min_epochs=2).to_pylist()[0]
    assert out["lightcurve"]["hmjd"][1] - out["lightcurve"]["hmjd"][0] == pytest.approx(
        30 / 86400, abs=1e-9
    )


def test_on_the_real_sample(sample_file):
    table = pq.read_table(sample_file)
    n = table.num_rows
    table = table.append_column("source_file", pa.array([sample_file.name] * n))
    table = table.append_column("source_row", pa.array(np.arange(n)))
    out = apply_quality_cuts(table.combine_chunks().to_batches()[0], min_epochs=20)
    reasons = out.column("reject_reason").to_pylist()
    assert out.num_rows == n == 5449
    assert reasons.count(None) == 1363  # objects with >= 20 catflags == 0 epochs
    assert reasons.count(RejectReason.TOO_FEW_EPOCHS) == n - 1363
    n_in = np.asarray(out.column("n_epochs_in"))
    parts = sum(np.asarray(out.column(c)) for c in ("n_good", "n_epochs_flagged"))
    np.testing.assert_array_equal(n_in, parts + np.asarray(out.column("n_epochs_nonfinite")))


def test_non_positive_errors_count_as_invalid_and_exact_repeats_are_dropped():
    lc = _lc(30)
    lc["magerr"][3] = 0.0
    lc["magerr"][4] = -0.05
    # An exact repeat of epoch 10, and an epoch at epoch 11's time with another magnitude.
    for name in ("hmjd", "mag", "magerr", "catflags"):
        lc[name].append(lc[name][10])
    lc["hmjd"].append(lc["hmjd"][11])
    lc["mag"].append(19.5)
    lc["magerr"].append(0.05)
    lc["catflags"].append(0)
    out = apply_quality_cuts(_batch([lc]), min_epochs=5).to_pylist()[0]
    assert out["n_epochs_nonfinite"] == 2
    assert out["n_epochs_duplicate"] == 1
    assert out["n_good"] == 29  # 32 epochs - 2 invalid - 1 exact repeat
    assert out["n_epochs_in"] == (
        out["n_good"] + out["n_epochs_flagged"] + out["n_epochs_nonfinite"]
        + out["n_epochs_duplicate"] + out["n_epochs_thinned"]
    )  # fmt: skip
    assert sorted(out["lightcurve"]["mag"]).count(19.5) == 1
    assert min(out["lightcurve"]["magerr"]) > 0


def test_light_curves_over_the_cap_are_thinned_evenly_and_counted():
    from udfs.kernels.lightcurve_cuts import MAX_EPOCHS, thinned_epochs

    n = 3 * MAX_EPOCHS + 7
    rng = np.random.default_rng(3)
    lc = _lc(n)
    order = rng.permutation(n)  # unsorted input
    lc = {k: [v[i] for i in order] for k, v in lc.items()}
    out = apply_quality_cuts(_batch([lc, _lc(40)]), min_epochs=5).to_pylist()
    assert out[0]["reject_reason"] is None
    assert out[0]["n_good"] == MAX_EPOCHS == len(out[0]["lightcurve"]["hmjd"])
    assert out[0]["n_epochs_thinned"] == n - MAX_EPOCHS
    t = np.array(out[0]["lightcurve"]["hmjd"])
    assert np.all(np.diff(t) > 0)
    assert t[0] == 58000.0 and t[-1] == 58000.0 + 1.5 * (n - 1)  # both ends kept
    assert np.ptp(np.diff(t)) <= 1.5  # evenly spaced: steps of 3 or 4 epochs
    assert out[1]["n_good"] == 40 and out[1]["n_epochs_thinned"] == 0
    keep = thinned_epochs(np.array([5, MAX_EPOCHS + 1]))
    assert keep[:5].all() and keep[5:].sum() == MAX_EPOCHS


def test_repeated_objectids_keep_the_first_file_and_row():
    from udfs.kernels.lightcurve_cuts import reject_repeated_objects, repeated_objects

    rows = [
        {"objectid": 7, "source_file": "b.parquet", **_lc(30)},
        {"objectid": 7, "source_file": "a.parquet", **_lc(30)},
        {"objectid": 8, "source_file": "a.parquet", **_lc(30)},
        {"objectid": 7, "source_file": "a.parquet", **_lc(2)},  # rejected anyway
    ]
    cut = apply_quality_cuts(_batch(rows), min_epochs=5)
    kept = cut.filter(pa.compute.is_null(cut.column("reject_reason")))
    first_of = repeated_objects(
        kept.column("objectid").to_numpy(),
        np.array(kept.column("source_file").to_pylist(), object),
        kept.column("source_row").to_numpy(),
    )
    assert first_of == {7: ("a.parquet", 1)}
    out = reject_repeated_objects(cut, first_of).to_pylist()
    assert [r["reject_reason"] for r in out] == [
        RejectReason.DUPLICATE_OBJECTID,
        None,
        None,
        RejectReason.TOO_FEW_EPOCHS,
    ]
    assert out[0]["lightcurve"] is None and out[1]["lightcurve"] is not None
