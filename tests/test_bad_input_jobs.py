"""Bad rows, bad epochs and awkward files through the whole classify job, on both engines.

One input folder holds them all: a 10^5-epoch light curve among ordinary ones, objects at RA
0/360 and at the poles, unsorted, repeated, non-finite and zero-error epochs, a second file that
repeats objects of the first, a zero-row file, and a file whose column types drift from the
others'. Both engines must finish, account for every row, and write the same catalog.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_dask_engine import _assert_same_catalog, _run_both, read_rows

from catalogs.schema import RejectReason
from udfs.kernels.lightcurve_cuts import MAX_EPOCHS

LONG = 100_000


def _good_rows(table: pa.Table, min_good: int = 30) -> np.ndarray:
    flags = table.column("catflags").to_pylist()
    return np.array([sum(1 for f in fl if f == 0) >= min_good for fl in flags])


def _set(table: pa.Table, name: str, values) -> pa.Table:
    field = table.schema.field(name)
    return table.set_column(table.schema.get_field_index(name), field, pa.array(values, field.type))


@pytest.fixture(scope="module")
def bad_inputs(sample_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad") / "inputs"
    folder.mkdir()
    sample = pq.read_table(sample_file).drop_columns(["__index_level_0__"])
    good = sample.filter(pa.array(_good_rows(sample)))
    a = good.slice(0, 120)
    rows = a.to_pylist()
    rng = np.random.default_rng(1)
    t = 58200.0 + 0.01 * np.arange(LONG)  # distinct in float32 too: no exact repeats
    rows[0] |= {  # a 10^5-epoch light curve
        "hmjd": t.astype(np.float32).tolist(),
        "mag": (18.0 + 0.02 * rng.standard_normal(LONG)).tolist(),
        "magerr": [0.02] * LONG,
        "clrcoeff": [0.0] * LONG,
        "catflags": [0] * LONG,
        "nepochs": LONG,
    }
    rows[1] |= {"objra": 359.9999, "objdec": 10.0}
    rows[2] |= {"objra": 0.00001, "objdec": -10.0}
    rows[3] |= {"objra": 123.0, "objdec": 89.99999}
    rows[4] |= {"objra": 300.0, "objdec": -89.99999}
    for name in ("hmjd", "mag", "magerr", "catflags", "clrcoeff"):
        rows[5][name] = rows[5][name][::-1]  # unsorted
        rows[6][name] = rows[6][name] + rows[6][name][:5]  # five epochs repeated exactly
    rows[7]["mag"][0] = float("nan")
    rows[7]["magerr"][1] = float("inf")
    rows[7]["magerr"][2] = 0.0
    rows[7]["magerr"][3] = -0.1
    rows[7]["catflags"][:4] = [0] * 4  # unflagged, so that they count as invalid
    pq.write_table(pa.Table.from_pylist(rows, schema=a.schema), folder / "a_ztf_dr5.parquet")
    # The same objects again in another file: their objectids repeat.
    pq.write_table(good.slice(60, 40), folder / "b_ztf_dr5.parquet")
    pq.write_table(a.schema.empty_table(), folder / "c_empty_ztf_dr5.parquet")
    # Drifted types: float64 times and magnitudes, int32 flags, an extra column.
    d = good.slice(120, 80)
    for name, kind in (("hmjd", pa.float64()), ("mag", pa.float64()), ("catflags", pa.int32())):
        d = d.set_column(d.schema.get_field_index(name), name, pc.cast(d[name], pa.list_(kind)))
    d = d.append_column("extra", pa.array(np.arange(d.num_rows)))
    pq.write_table(d, folder / "d_ztf_dr5.parquet")
    return folder


@pytest.fixture(scope="module")
def bad_runs(spark, dask_client, bad_inputs, model_dir, tmp_path_factory):
    return _run_both(spark, dask_client, [bad_inputs], tmp_path_factory.mktemp("out"), model_dir)


def test_every_row_is_accounted_for_and_both_engines_agree(bad_runs):
    runs, outs = bad_runs
    _assert_same_catalog(runs, outs)
    for summary in runs.values():
        assert summary.rows_in == 120 + 40 + 0 + 80
        assert summary.rows_in == summary.rows_out + summary.rows_rejected
        assert summary.rejected_by_reason == {RejectReason.DUPLICATE_OBJECTID: 40}


def test_the_long_light_curve_is_thinned_to_the_cap_and_said(bad_runs, bad_inputs):
    runs, outs = bad_runs
    first = pq.read_table(bad_inputs / "a_ztf_dr5.parquet")["objectid"][0].as_py()
    rows = read_rows(outs["spark"])
    long = rows.filter(pc.equal(rows["objectid"], first)).to_pylist()
    # The exposure-level cut may take an epoch or two that fall in a bad exposure's time bin.
    assert len(long) == 1 and MAX_EPOCHS - 20 <= long[0]["n_good"] <= MAX_EPOCHS
    assert runs["spark"].epochs_thinned == LONG - MAX_EPOCHS
    assert f"{LONG - MAX_EPOCHS:,} thinned" in runs["spark"].format()


def test_bad_epochs_are_counted_by_kind(bad_runs, bad_inputs):
    summary = bad_runs[0]["spark"]
    repeated = pq.read_table(bad_inputs / "a_ztf_dr5.parquet").slice(6, 1).to_pylist()[0]
    good_repeats = sum(1 for f in repeated["catflags"][-5:] if f == 0)  # flagged ones count so
    assert good_repeats > 0
    assert summary.epochs_duplicate == good_repeats
    assert summary.epochs_nonfinite == 4
    assert summary.epochs_in == (
        summary.epochs_good + summary.epochs_flagged + summary.epochs_nonfinite
        + summary.epochs_duplicate + summary.epochs_thinned
    )  # fmt: skip


def test_objects_at_ra_wrap_and_the_poles_are_classified(bad_runs, bad_inputs):
    a = pq.read_table(bad_inputs / "a_ztf_dr5.parquet").slice(1, 4)
    rows = read_rows(bad_runs[1]["dask"])
    found = rows.filter(pc.is_in(rows["objectid"], a["objectid"])).sort_by("objectid")
    expected = a.sort_by("objectid")
    assert found.num_rows == 4
    d_ra = (found["ra"].to_numpy() - expected["objra"].to_numpy() + 180.0) % 360.0 - 180.0
    assert np.allclose(d_ra, 0.0, atol=1e-4)
    assert np.allclose(found["dec"].to_numpy(), expected["objdec"].to_numpy(), atol=1e-4)
    assert np.all((found["ra"].to_numpy() >= 0) & (found["ra"].to_numpy() < 360))
