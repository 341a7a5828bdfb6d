"""The plain FITS header reader against astropy, and its refusals (which fall back to astropy)."""

import gzip

import numpy as np
from astropy.io import fits

from catalogs.fits_headers import read_plain_table_headers
from catalogs.ztf_psfcat import PSFCAT_COLUMNS, read_psfcat, write_psfcat


def _columns(n=40):
    rng = np.random.default_rng(5)
    cols = {c: rng.uniform(1, 2, n).astype(np.float32) for c in PSFCAT_COLUMNS}
    cols.update(sourceid=np.arange(n, dtype=np.int32), flags=np.zeros(n, np.int16))
    cols.update(ra=rng.uniform(10, 11, n), dec=rng.uniform(-5, -4, n))
    return cols


HEADER = {"FIELDID": 700, "CCDID": 3, "QID": 2, "FILTERID": 2, "OBSMJD": 59123.4567890123,
          "MAGZP": 26.31, "MAGZPRMS": 0.02, "INFOBITS": 0, "PID": 1234567890123,
          "OBJECT": "it's a 'field'", "NEGATIVE": -1.5e-07}  # fmt: skip


def test_headers_and_data_offset_equal_astropys(tmp_path):
    path = tmp_path / "a_psfcat.fits"
    write_psfcat(path, _columns(), HEADER)
    got = read_plain_table_headers(path)
    assert got is not None
    with fits.open(path) as hdus:
        for mine, theirs in ((got.primary, hdus[0].header), (got.table, hdus[1].header)):
            assert set(mine) == set(theirs)
            for key in theirs:
                assert mine[key] == theirs[key] and type(mine[key]) is type(theirs[key]), key
        assert got.data_offset == hdus.fileinfo(1)["datLoc"]
    assert got.primary["OBSMJD"] == 59123.4567890123
    assert got.primary["OBJECT"] == "it's a 'field'"


def test_refuses_what_it_does_not_take_apart(tmp_path):
    plain = tmp_path / "p.fits"
    write_psfcat(plain, _columns(), HEADER)
    # gzip, a long-string CONTINUE card, a HIERARCH card, a complex value: astropy's job.
    zipped = tmp_path / "p.fits.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_plain_table_headers(zipped) is None
    for card in ("CONTINUE  'more'", "HIERARCH ESO DET = 1", "CPLX    = (1.0, 2.0)"):
        data = bytearray(plain.read_bytes())
        at = data.index(b"FIELDID ")
        data[at : at + 80] = card.ljust(80).encode()
        odd = tmp_path / "odd.fits"
        odd.write_bytes(bytes(data))
        assert read_plain_table_headers(odd) is None, card
    not_fits = tmp_path / "n.fits"
    not_fits.write_bytes(b"hello" * 1000)
    assert read_plain_table_headers(not_fits) is None


def test_reader_gives_the_same_rows_either_way(tmp_path):
    # The same catalog, plain (headers read here) and gzipped (astropy): the same table.
    plain = tmp_path / "x_psfcat.fits"
    write_psfcat(plain, _columns(), HEADER)
    zipped = tmp_path / "x_psfcat.fits.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = read_psfcat(plain), read_psfcat(zipped)
    assert a.drop_columns(["source_file"]).equals(b.drop_columns(["source_file"]))
    assert a.num_rows == 40 and a.column("detid")[0].as_py() == (1234567890123 << 20)
