"""udfs.kernels.bad_exposures: exposures where many stars jump together are found, epochs cut."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalogs.schema import LIGHTCURVE_STRUCT
from udfs.kernels.bad_exposures import (
    EXPOSURE_BIN_DAYS,
    exposure_counts,
    exposure_deviations,
    exposure_key,
    flag_exposures,
    flagged_from_counts,
    remove_epochs,
)
from udfs.kernels.lightcurve_cuts import apply_quality_cuts

N_STARS, N_EPOCHS = 60, 40
BAD = (7, 21, 33)  # exposure indices where 30% of the stars are 0.5 mag too bright


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    times = 59000.0 + np.arange(N_EPOCHS) * 1.3
    rows = []
    for _ in range(N_STARS):
        # Each star's heliocentric correction shifts its times by a few seconds.
        t = times + rng.uniform(-5, 5) / 86400
        mag = 18 + rng.normal(0, 0.05, N_EPOCHS)
        for e in BAD:
            if rng.random() < 0.3:
                mag[e] -= 0.5
        rows.append({"hmjd": list(t), "mag": list(mag), "magerr": [0.05] * N_EPOCHS,
                     "band": [0] * N_EPOCHS})  # fmt: skip
    return pa.RecordBatch.from_pydict(
        {
            "objectid": pa.array(np.arange(N_STARS, dtype=np.int64)),
            "source_file": pa.array(["ztf_000250_zg_c01_q1_dr5.parquet"] * N_STARS),
            "n_good": pa.array(np.full(N_STARS, N_EPOCHS, np.int32)),
            "n_good_g": pa.array(np.full(N_STARS, N_EPOCHS, np.int32)),
            "lightcurve": pa.array(rows, LIGHTCURVE_STRUCT),
        }
    ), times


def test_the_bad_exposures_and_only_they_are_flagged():
    batch, times = _batch()
    deviations = pa.Table.from_batches([exposure_deviations(batch)])
    assert deviations.num_rows == N_STARS * N_EPOCHS
    flagged = flag_exposures(deviations, min_stars=30, max_deviant_fraction=0.05)
    assert set(flagged) == {("ztf_000250_zg_c01_q1_dr5.parquet", 0)}
    expected = {int(k) for k in exposure_key(times[list(BAD)])}
    assert flagged[("ztf_000250_zg_c01_q1_dr5.parquet", 0)] == expected
    # Too few stars: nothing is judged.
    assert flag_exposures(deviations, min_stars=N_STARS + 1, max_deviant_fraction=0.05) == {}
    assert EXPOSURE_BIN_DAYS * 86400 > 10  # wider than the spread of heliocentric corrections


def test_partial_counts_of_two_batches_sum_to_the_flags_of_the_whole():
    batch, _ = _batch()
    whole = flag_exposures(pa.Table.from_batches([exposure_deviations(batch)]), 30, 0.05)
    # The engines count per batch, then sum: the halves hold 30 stars each.
    halves = pa.Table.from_batches([exposure_counts(batch.slice(0, 30)),
                                    exposure_counts(batch.slice(30))])  # fmt: skip
    assert halves.num_rows == 2 * N_EPOCHS
    summed = halves.group_by(["source_file", "band", "exposure"]).aggregate(
        [("n", "sum"), ("d", "sum")]
    )
    assert set(summed.column("n_sum").to_pylist()) == {N_STARS}
    flagged = flagged_from_counts(
        summed.column("source_file").to_pylist(), summed.column("band").to_pylist(),
        summed.column("exposure").to_pylist(), summed.column("n_sum").to_numpy(),
        summed.column("d_sum").to_numpy(), 30, 0.05,
    )  # fmt: skip
    assert flagged == whole and len(whole[("ztf_000250_zg_c01_q1_dr5.parquet", 0)]) == len(BAD)


def test_removal_updates_the_light_curves_and_counts():
    batch, _ = _batch()
    flagged = flag_exposures(pa.Table.from_batches([exposure_deviations(batch)]), 30, 0.05)
    out, removed = remove_epochs(batch, flagged, min_left=20)
    assert out.schema == batch.schema and removed == N_STARS * len(BAD)
    lc = out.column("lightcurve").to_pylist()
    assert all(len(x["hmjd"]) == N_EPOCHS - len(BAD) for x in lc)
    assert out.column("n_good").to_pylist() == [N_EPOCHS - len(BAD)] * N_STARS
    assert out.column("n_good_g").to_pylist() == [N_EPOCHS - len(BAD)] * N_STARS
    assert max(max(x["mag"]) - min(x["mag"]) for x in lc) < 0.45  # the jumps are gone
    # A light curve that would fall below min_left is left whole.
    whole, none_removed = remove_epochs(batch, flagged, min_left=N_EPOCHS - 1)
    assert none_removed == 0 and whole.equals(batch)


def test_the_dr5_sample_has_bad_exposures(sample_file):
    table = pq.read_table(sample_file)
    table = table.append_column("source_file", pa.array([sample_file.name] * table.num_rows))
    table = table.append_column("source_row", pa.array(np.arange(table.num_rows)))
    cut = pa.Table.from_batches(
        [apply_quality_cuts(b, 20) for b in table.combine_chunks().to_batches()]
    )
    kept = cut.filter(cut.column("reject_reason").is_null()).combine_chunks().to_batches()[0]
    deviations = pa.Table.from_batches([exposure_deviations(kept)])
    flagged = flag_exposures(deviations, 30, 0.05)
    n_flagged = sum(len(v) for v in flagged.values())
    assert 10 <= n_flagged <= 40  # of 89 exposures with 30 or more stars
    out, removed = remove_epochs(kept, flagged, 20)
    assert out.num_rows == kept.num_rows and removed > 5000


def _kept_sample_rows(sample_file) -> pa.RecordBatch:
    """The DR5 sample's rows that pass the quality cuts, all from one file "s"."""
    table = pq.read_table(sample_file)
    table = table.append_column("source_file", pa.array(["s"] * table.num_rows))
    table = table.append_column("source_row", pa.array(np.arange(table.num_rows)))
    cut = apply_quality_cuts(table.combine_chunks().to_batches()[0], 20)
    return cut.filter(pc.is_null(cut.column("reject_reason")))


def test_deviant_epochs_equal_a_per_star_loop_on_the_real_sample(sample_file):
    # The labelled medians (scipy.ndimage) replaced a loop over stars and bands: same answer.
    from udfs.kernels.bad_exposures import DEVIATION_SIGMA
    from udfs.kernels.model_inputs import flat_lightcurves

    kept = _kept_sample_rows(sample_file)
    flat = flat_lightcurves(kept.column("lightcurve"))
    expected = np.zeros(flat.mag.size, dtype=bool)
    for k in range(flat.offsets.size - 1):
        lo, hi = flat.offsets[k], flat.offsets[k + 1]
        for b in np.unique(flat.channel[lo:hi]):
            idx = lo + np.flatnonzero(flat.channel[lo:hi] == b)
            off = np.abs(flat.mag[idx] - np.median(flat.mag[idx]))
            spread = 1.4826 * np.median(off)
            expected[idx] = (spread > 0) & (off > DEVIATION_SIGMA * spread)
    got = exposure_deviations(kept).column("deviant").to_numpy(zero_copy_only=False)
    assert expected.sum() > 1000
    np.testing.assert_array_equal(got, expected)


def test_removed_epochs_equal_a_per_star_loop_on_the_real_sample(sample_file):
    # The hash join replaced a loop over stars and bands: the same epochs go, on real flags.
    from udfs.kernels.bad_exposures import flag_exposures
    from udfs.kernels.model_inputs import flat_lightcurves

    kept = _kept_sample_rows(sample_file)
    flagged = flag_exposures(pa.Table.from_batches([exposure_deviations(kept)]), 30, 0.05)
    for min_left in (20, 60):  # 60: some light curves would keep too few and stay whole
        flat = flat_lightcurves(kept.column("lightcurve"))
        keys = exposure_key(flat.t_days)
        expected = np.ones(flat.t_days.size, dtype=bool)
        for k in range(flat.offsets.size - 1):
            lo, hi = flat.offsets[k], flat.offsets[k + 1]
            drop = np.isin(keys[lo:hi], list(flagged.get(("s", 0), ())))
            if drop.any() and (hi - lo) - drop.sum() >= min_left:
                expected[lo:hi] = ~drop
        out, removed = remove_epochs(kept, flagged, min_left)
        assert removed == int((~expected).sum()) > 0
        got = flat_lightcurves(out.column("lightcurve"))
        np.testing.assert_array_equal(got.t_days, flat.t_days[expected])
        assert out.column("n_good").to_pylist() == np.diff(got.offsets).tolist()
