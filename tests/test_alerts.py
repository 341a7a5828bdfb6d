"""ZTF alert packets in: the Avro reader on the 36 real packets, and `ingest --format alerts`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import fastavro
import lsdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogs.detection_tables import from_alerts
from catalogs.errors import InputError
from catalogs.ztf_alerts import objectid_to_ztf_name, read_alert_file, ztf_name_to_objectid
from jobs.ingest import IngestConfig, run_ingest

ALERTS = Path(__file__).resolve().parent.parent / "data" / "ztf_alerts"
PACKETS = sorted(ALERTS.glob("*/*.avro"))


def _packet(path: Path) -> dict:
    with open(path, "rb") as handle:
        return next(fastavro.reader(handle))


def test_every_packet_epoch_is_a_row_with_its_sign():
    assert len(PACKETS) == 36
    for path in PACKETS:
        alert = _packet(path)
        rows = read_alert_file(str(path))
        history = alert["prv_candidates"] or []
        assert rows.num_rows == 1 + len(history)
        first = rows.slice(0, 1).to_pylist()[0]
        candidate = alert["candidate"]
        assert first["candid"] == alert["candid"] == candidate["candid"]
        assert first["jd"] == candidate["jd"] and first["fid"] == candidate["fid"]
        assert first["isdiffpos"] == (candidate["isdiffpos"] in ("t", "1"))
        assert np.float32(first["magpsf"]) == np.float32(candidate["magpsf"])
        n_limits = sum(p["candid"] is None for p in history)
        assert rows.column("candid").null_count == n_limits
        assert rows.column("magpsf").null_count == n_limits


def test_detections_and_upper_limits_are_told_apart():
    tables = [from_alerts(read_alert_file(str(p)), str(p)) for p in PACKETS]
    table = pa.concat_tables(tables)
    reasons = Counter(table.column("reject_reason").to_pylist())
    # Counted by hand from the packets: every prv_candidate without a candid is a limit.
    n_limits = sum(
        sum(p["candid"] is None for p in _packet(path)["prv_candidates"] or []) for path in PACKETS
    )
    assert reasons["non_detection"] == n_limits
    assert sum(reasons.values()) == table.num_rows
    limits = table.filter(pa.compute.equal(table.column("reject_reason"), "non_detection"))
    assert np.isnan(limits.column("magerr").to_numpy()).all()
    assert (limits.column("detid").to_numpy() < 0).all()
    kept = table.filter(table.column("reject_reason").is_null())
    assert (kept.column("detid").to_numpy() > 0).all()
    # Heliocentric MJD: within the light time across 1 AU (8.3 min) of jd - 2400000.5.
    raw = pa.concat_tables([read_alert_file(str(p)) for p in PACKETS])
    mjd = raw.column("jd").to_numpy() - 2_400_000.5
    assert np.abs(table.column("hmjd").to_numpy() - mjd).max() < 0.0058


def test_ztf_names_round_trip():
    names = {r for p in PACKETS for r in read_alert_file(str(p)).column("objectId").to_pylist()}
    assert len(names) == 35
    ids = {ztf_name_to_objectid(n) for n in names}
    assert len(ids) == 35 and all(objectid_to_ztf_name(ztf_name_to_objectid(n)) == n for n in names)
    with pytest.raises(ValueError, match="not a ZTF object name"):
        ztf_name_to_objectid("ZTF20AAELULU")


@pytest.mark.parametrize("content", [b"", b"not avro at all\n", "truncated"])
def test_bad_packets_name_the_file(tmp_path, capsys, content):
    path = tmp_path / "bad.avro"
    path.write_bytes(PACKETS[0].read_bytes()[:-5000] if content == "truncated" else content)
    with pytest.raises(InputError, match=r"bad\.avro: not a readable ZTF alert packet"):
        read_alert_file(str(path))
    # The command line stops before Spark starts, with one line naming the file.
    from jobs.cli import main

    argv = ["ingest", "--format", "alerts", "--input", str(ALERTS), str(path)]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 2
    said = capsys.readouterr().err
    assert f"varsky ingest: error: {path}: not a readable ZTF alert packet" in said


@pytest.fixture(scope="module")
def alert_ingest(spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("alerts") / "lightcurves"
    config = IngestConfig(
        input_format="alerts",
        inputs=(str(ALERTS),),
        output=str(out),
        rejects=str(out) + "_rejects",
    )
    return run_ingest(spark, config, log=lambda *_: None), out


def test_ingest_counts_repeated_history_once(alert_ingest):
    summary, out = alert_ingest
    raw = pa.concat_tables([read_alert_file(str(p)) for p in PACKETS])
    epochs = {}
    for row in raw.select(["objectId", "candid", "jd", "fid", "isdiffpos"]).to_pylist():
        detected = row["candid"] is not None
        key = (row["objectId"], row["candid"] if detected else (row["jd"], row["fid"]))
        epochs.setdefault(key, row)
    assert summary.rows_in == raw.num_rows
    repeats = raw.num_rows - len(epochs)
    assert repeats > 0  # one object has two packets, the later holding the earlier's history
    assert summary.rejected_by_reason["duplicate_epoch"] == repeats
    detections = [r for r in epochs.values() if r["candid"] is not None]
    positive = sum(bool(r["isdiffpos"]) for r in detections)
    assert summary.rows_out == positive
    assert summary.rejected_by_reason["negative_difference"] == len(detections) - positive
    assert summary.rejected_by_reason["non_detection"] == len(epochs) - len(detections)
    assert summary.rows_in == summary.rows_out + summary.rows_rejected
    rejects = pq.read_table(str(out) + "_rejects")
    assert rejects.num_rows == summary.rows_rejected


def test_ingested_alerts_are_one_light_curve_per_object(alert_ingest):
    summary, out = alert_ingest
    df = lsdb.open_catalog(out).compute()
    assert df["objectid"].is_unique and len(df) == summary.objects_out
    names = {objectid_to_ztf_name(i) for i in df["objectid"]}
    raw = pa.concat_tables([read_alert_file(str(p)) for p in PACKETS])
    assert names <= set(raw.column("objectId").to_pylist())
    assert int(df["n_epochs"].sum()) == summary.rows_out
    for lc in df["lightcurve"]:
        assert np.all(np.diff(np.asarray(lc["hmjd"], np.float64)) >= 0)
