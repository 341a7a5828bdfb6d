import datetime
import gzip

import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits

from catalogs.errors import InputError
from catalogs.schema import make_detid, rcid_of
from catalogs.ztf_psfcat import (
    JD_MINUS_MJD_DAYS,
    PID_BITS,
    PSFCAT_COLUMN_FORMATS,
    PSFCAT_COLUMNS,
    PSFCAT_DETECTION_SCHEMA,
    REFPSFCAT_SCHEMA,
    derived_pid,
    psfcat_file_name,
    psfcat_quality,
    read_psfcat,
    read_refpsfcat,
    refpsfcat_file_name,
    write_psfcat,
)

N = 7
PID = 1_045_166_431_315
OBS_MJD = 58348.123456789012


def _columns(n: int = N) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "sourceid": np.arange(1, n + 1),
        "xpos": rng.uniform(0, 3072, n),
        "ypos": rng.uniform(0, 3080, n),
        "ra": 41.7 + rng.uniform(-0.1, 0.1, n),
        "dec": -26.6 + rng.uniform(-0.1, 0.1, n),
        "flux": rng.uniform(100, 1000, n),
        "sigflux": rng.uniform(1, 10, n),
        "mag": rng.uniform(15, 20, n).astype(np.float32),
        "sigmag": rng.uniform(0.01, 0.2, n).astype(np.float32),
        "snr": rng.uniform(5, 100, n),
        "chi": np.ones(n),
        "sharp": np.zeros(n),
        "flags": np.array([0, 0, 4, 0, 0, 0, 1][:n] + [0] * max(0, n - 7)),
    }


def _header(**changes) -> dict:
    header = {
        "FIELDID": 250,
        "CCDID": 3,
        "QID": 2,
        "FILTERID": 2,
        "OBSMJD": OBS_MJD,
        "MAGZP": 26.2,
        "MAGZPRMS": 0.02,
        "INFOBITS": 0,
        "PID": PID,
    }
    header.update(changes)
    return {k: v for k, v in header.items() if v is not None}


def test_round_trip_values_and_native_dtypes(tmp_path):
    path = tmp_path / "cat_psfcat.fits"
    cols = _columns()
    write_psfcat(path, cols, _header())
    table = read_psfcat(path)
    assert table.schema == PSFCAT_DETECTION_SCHEMA
    assert table.num_rows == N
    for name in table.column_names:
        if name != "objectid" and name != "source_file":
            assert table[name].to_numpy().dtype.isnative
    np.testing.assert_array_equal(table["ra"].to_numpy(), cols["ra"])
    np.testing.assert_array_equal(table["dec"].to_numpy(), cols["dec"])
    np.testing.assert_array_equal(table["mag"].to_numpy(), cols["mag"])
    np.testing.assert_array_equal(table["magerr"].to_numpy(), cols["sigmag"])
    np.testing.assert_array_equal(table["flags"].to_numpy(), cols["flags"])
    assert table["mjd"].type == pa.float64()
    assert set(table["mjd"].to_pylist()) == {OBS_MJD}  # all float64 digits kept
    assert set(table["band"].to_pylist()) == {1}  # r
    assert set(table["fieldid"].to_pylist()) == {250}
    assert set(table["rcid"].to_pylist()) == {rcid_of(3, 2)}
    assert table["objectid"].null_count == N
    assert table["source_file"].to_pylist() == [str(path)] * N
    assert table["source_row"].to_pylist() == list(range(N))
    assert table["infobits"].to_pylist() == [0] * N
    assert table["detid"].to_pylist() == [make_detid(PID, s) for s in range(1, N + 1)]


def test_written_file_is_valid_fits(tmp_path):
    path = tmp_path / "cat_psfcat.fits"
    write_psfcat(path, _columns(), _header())
    with fits.open(path) as hdus:
        hdus.verify("exception")
        assert hdus[0].header["PID"] == PID
        assert hdus[0].header["OBSMJD"] == OBS_MJD
        table = hdus[1]
        assert [c.name for c in table.columns] == list(PSFCAT_COLUMNS)
        assert [c.format for c in table.columns] == [
            PSFCAT_COLUMN_FORMATS[c] for c in PSFCAT_COLUMNS
        ]
        np.testing.assert_array_equal(table.data["ra"], _columns()["ra"])


def test_obsjd_variant_converts_in_float64(tmp_path):
    path = tmp_path / "jd_psfcat.fits"
    jd = 2458348.623456789
    write_psfcat(path, _columns(), _header(OBSMJD=None, OBSJD=jd))
    mjd = read_psfcat(path)["mjd"].to_numpy()
    assert mjd.dtype == np.float64
    assert mjd[0] == np.float64(jd) - JD_MINUS_MJD_DAYS
    assert abs(mjd[0] - 58348.123456789) < 1e-9


def test_astropy_written_file_with_scaled_column(tmp_path):
    # astropy stores uint16 as int16 with TZERO: the reader lets astropy decode it.
    cols = _columns()
    fits_cols = [
        fits.Column(name=name.upper(), format=PSFCAT_COLUMN_FORMATS[name], array=cols[name])
        for name in PSFCAT_COLUMNS
        if name != "flags"
    ]
    fits_cols.append(fits.Column(name="flags", format="I", bzero=32768, array=np.full(N, 40000)))
    table = fits.BinTableHDU.from_columns(fits_cols)
    for key, value in _header().items():
        table.header[key] = value
    path = tmp_path / "astropy_psfcat.fits"
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    out = read_psfcat(path)
    assert out["flags"].to_pylist() == [40000] * N
    np.testing.assert_array_equal(out["ra"].to_numpy(), cols["ra"])
    gz = tmp_path / "astropy_psfcat.fits.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_psfcat(gz).drop_columns(["source_file"]).equals(out.drop_columns(["source_file"]))


def test_gzipped_plain_file(tmp_path):
    path = tmp_path / "cat_psfcat.fits"
    write_psfcat(path, _columns(), _header())
    gz = tmp_path / "cat_psfcat.fits.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    plain = read_psfcat(path).drop_columns(["source_file"])
    assert read_psfcat(gz).drop_columns(["source_file"]).equals(plain)


def test_empty_catalog_reads_zero_rows(tmp_path):
    path = tmp_path / "empty_psfcat.fits"
    write_psfcat(path, {c: np.zeros(0) for c in PSFCAT_COLUMNS}, _header())
    table = read_psfcat(path)
    assert table.num_rows == 0 and table.schema == PSFCAT_DETECTION_SCHEMA


def test_missing_pid_is_derived_from_the_file_name(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        write_psfcat(tmp_path / d / "x_psfcat.fits", _columns(), _header(PID=None))
    a = read_psfcat(tmp_path / "a" / "x_psfcat.fits")["detid"].to_numpy()
    b = read_psfcat(tmp_path / "b" / "x_psfcat.fits")["detid"].to_numpy()
    pid = derived_pid("x_psfcat.fits")
    assert 0 <= pid < 2**PID_BITS
    np.testing.assert_array_equal(a, b)
    assert a[0] == make_detid(pid, 1)
    hinted = read_psfcat(tmp_path / "a" / "x_psfcat.fits", file_index_hint=12)
    assert hinted["detid"][0].as_py() == make_detid(12, 1)
    # A header PID wins over the hint.
    write_psfcat(tmp_path / "p_psfcat.fits", _columns(), _header())
    assert read_psfcat(tmp_path / "p_psfcat.fits", 12)["detid"][0].as_py() == make_detid(PID, 1)


def test_reference_catalog(tmp_path):
    cols = _columns()
    for name in ("snr", "chi", "sharp"):
        del cols[name]
    header = _header(OBSMJD=None, INFOBITS=None, PID=5_000_000_250_123)
    write_psfcat(tmp_path / "ref.fits", cols, header)
    ref = read_refpsfcat(tmp_path / "ref.fits")
    assert ref.schema == REFPSFCAT_SCHEMA
    assert ref["refid"].to_pylist() == [make_detid(5_000_000_250_123, s) for s in range(1, N + 1)]
    assert ref["nepochs"].null_count == N
    cols["nepochs"] = np.full(N, 25)
    write_psfcat(tmp_path / "ref2.fits", cols, header)
    assert read_refpsfcat(tmp_path / "ref2.fits")["nepochs"].to_pylist() == [25] * N


def test_quality_rule():
    good = psfcat_quality(np.array([0, 4, 0, 1]), np.array([0, 0, 2, 0]))
    assert good.tolist() == [True, False, False, False]
    assert psfcat_quality(np.array([0, 1]), 0).tolist() == [True, False]


def test_file_names():
    mjd = 58348.5
    date = datetime.date(1858, 11, 17) + datetime.timedelta(days=58348)
    assert date == datetime.date(2018, 8, 18)
    assert (
        psfcat_file_name(mjd, 250, 1, 1, 1) == "ztf_20180818500000_000250_zg_c01_o_q1_psfcat.fits"
    )
    assert psfcat_file_name(60310.0, 1895, 3, 16, 4).startswith("ztf_20240101000000_001895_zi_c16")
    assert refpsfcat_file_name(250, 2, 1, 1) == "ztf_000250_zr_c01_q1_refpsfcat.fits"


# --- errors name the file and the column or key ---


def test_missing_column(tmp_path):
    cols = _columns()
    del cols["sigmag"]
    write_psfcat(tmp_path / "nosig.fits", cols, _header())
    with pytest.raises(InputError, match=r"nosig\.fits, column 'sigmag': required column is miss"):
        read_psfcat(tmp_path / "nosig.fits")


@pytest.mark.parametrize("key", ["FIELDID", "CCDID", "QID", "FILTERID", "INFOBITS"])
def test_missing_header_key(tmp_path, key):
    write_psfcat(tmp_path / "nokey.fits", _columns(), _header(**{key: None}))
    with pytest.raises(InputError, match=rf"nokey\.fits: required header key '{key}' is missing"):
        read_psfcat(tmp_path / "nokey.fits")


def test_missing_time(tmp_path):
    write_psfcat(tmp_path / "notime.fits", _columns(), _header(OBSMJD=None))
    with pytest.raises(InputError, match=r"notime\.fits: required header key 'OBSMJD' \(or 'OB"):
        read_psfcat(tmp_path / "notime.fits")


def test_bad_header_value(tmp_path):
    write_psfcat(tmp_path / "f5.fits", _columns(), _header(FILTERID=5))
    with pytest.raises(InputError, match=r"f5\.fits: header key 'FILTERID' must be an integer in"):
        read_psfcat(tmp_path / "f5.fits")


def test_duplicate_sourceid(tmp_path):
    cols = _columns()
    cols["sourceid"][4] = 3
    write_psfcat(tmp_path / "dup.fits", cols, _header())
    with pytest.raises(InputError, match=r"dup\.fits, column 'sourceid', row 4: sourceid 3 appear"):
        read_psfcat(tmp_path / "dup.fits")


def test_missing_hdu(tmp_path):
    fits.PrimaryHDU().writeto(tmp_path / "nohdu.fits")
    with pytest.raises(InputError, match=r"nohdu\.fits: HDU 1 \(the binary table of sources\) is"):
        read_psfcat(tmp_path / "nohdu.fits")


def test_empty_file(tmp_path):
    (tmp_path / "zero.fits").write_bytes(b"")
    with pytest.raises(InputError, match=r"zero\.fits: file is empty \(0 bytes\), not a FITS"):
        read_psfcat(tmp_path / "zero.fits")


def test_not_fits(tmp_path):
    (tmp_path / "text.fits").write_text("sourceid,ra,dec\n1,2,3\n")
    with pytest.raises(InputError, match=r"text\.fits: cannot read as FITS"):
        read_refpsfcat(tmp_path / "text.fits")


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"gone\.fits: input file does not exist"):
        read_psfcat(tmp_path / "gone.fits")


def test_writer_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="columns must be 1-d of one length"):
        write_psfcat(tmp_path / "x.fits", {"ra": np.zeros(2), "dec": np.zeros(3)}, {})
    with pytest.raises(ValueError, match="column 'flags' does not fit TFORM I"):
        write_psfcat(tmp_path / "x.fits", {"flags": np.array([70000])}, {})
    with pytest.raises(ValueError, match="FITS header key 'TOOLONGKEY'"):
        write_psfcat(tmp_path / "x.fits", {"ra": np.zeros(1)}, {"TOOLONGKEY": 1})
