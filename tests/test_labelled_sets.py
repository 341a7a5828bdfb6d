"""Real labelled sets: long detections + labels -> one time-ordered light curve per object."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogs.band_map import BandMap
from catalogs.errors import InputError
from catalogs.labelled_sets import read_labelled_set
from tests.conftest import REPO

REAL = REPO / "data" / "real_labelled"


def _write_set(tmp_path, bands, extra_label=None):
    dets = pa.table(
        {
            "objectid": ["b", "a", "a", "b", "a"],
            "ra": [10.0, 20.0, 20.0, 10.0, 20.0],
            "dec": [1.0, -2.0, -2.0, 1.0, -2.0],
            "mjd": [59000.25, 58000.5, 57000.125, 59000.125, 58500.0],
            "band": bands,
            "mag": pa.array([15, 16, 17, 18, 19], pa.float32()),
            "magerr": pa.array([0.1] * 5, pa.float32()),
        }
    )
    ids = ["a", "b"] + ([extra_label] if extra_label else [])
    labels = pa.table(
        {
            "objectid": ids,
            "objectid_int": pa.array([7, 3, 9][: len(ids)], pa.int64()),
            "label_orig": ["EW", "RRd", "X"][: len(ids)],
            "classes": ["ew", "rrc|rrab", "ea"][: len(ids)],
        }
    )
    pq.write_table(dets, tmp_path / "toy_detections.parquet")
    pq.write_table(labels, tmp_path / "toy_labels.parquet")
    return tmp_path / "toy"


def test_time_order_channels_and_positions(tmp_path):
    prefix = _write_set(tmp_path, ["V", "V", "r", "V", "V"], extra_label="c")
    table = read_labelled_set(prefix, BandMap.parse("V=g"))
    rows = table.to_pylist()
    assert [r["objectid"] for r in rows] == [3, 7, 9]
    b, a, c = rows
    assert a["lightcurve"]["hmjd"] == [57000.125, 58000.5, 58500.0]  # float64, sorted
    assert a["lightcurve"]["band"] == [1, 0, 0]
    assert a["lightcurve"]["mag"] == [17.0, 16.0, 19.0]
    assert b["lightcurve"]["hmjd"] == [59000.125, 59000.25]
    assert (a["ra"], a["dec"], a["n_epochs"]) == (20.0, -2.0, 3)
    assert c["n_epochs"] == 0 and c["lightcurve"]["hmjd"] == []
    assert b["classes"] == "rrc|rrab" and b["classes"].split("|") == ["rrc", "rrab"]
    assert table.schema.field("lightcurve").type.field("hmjd").type == pa.list_(pa.float64())


def test_dropped_band_and_unmapped_band(tmp_path):
    prefix = _write_set(tmp_path, ["u", "g", "g", "g", "u"])
    table = read_labelled_set(prefix, BandMap.parse("rubin"))
    assert table.column("n_epochs").to_pylist() == [1, 2]  # b lost one u epoch, a one
    with pytest.raises(InputError, match=r"toy_detections.parquet, column 'band', row 0: band 'u'"):
        read_labelled_set(prefix)


def test_missing_files(tmp_path):
    with pytest.raises(InputError, match="nope_detections.parquet: no such file"):
        read_labelled_set(tmp_path / "nope")


def test_real_crts_set_reads_whole():
    table = read_labelled_set(REAL / "crts_train", BandMap.parse("crts"))
    assert table.num_rows == 5757
    n = table.column("n_epochs").to_numpy()
    assert n.sum() == 1_651_791 and n.min() >= 60
    hmjd = table.column("lightcurve").combine_chunks().field("hmjd")
    first = np.asarray(hmjd[0].as_py())
    assert np.all(np.diff(first) >= 0)
