"""ZTF PSF-fit source catalogs (``*_psfcat.fits``, ``*_refpsfcat.fits``): write, check and read.

One FITS file per exposure and CCD quadrant (science catalogs) or per field, quadrant and filter
(reference catalogs). The sources are the binary table of HDU 1, one row per source:

========  =====  ======  =========================================================
column    TFORM  unit    meaning
========  =====  ======  =========================================================
sourceid  J      -       running source number in the file (0 <= sourceid < 2**20)
xpos      E      pixel   x on the quadrant image
ypos      E      pixel   y on the quadrant image
ra        D      deg     right ascension, ICRS
dec       D      deg     declination, ICRS
flux      E      DN      PSF-fit flux
sigflux   E      DN      1-sigma flux error
mag       E      mag     **calibrated** magnitude: ``MAGZP - 2.5 log10(flux)``, the
                         exposure's zero point already applied
sigmag    E      mag     1-sigma magnitude error
snr       E      -       flux / sigflux
chi       E      -       PSF-fit reduced chi-square
sharp     E      -       PSF-fit sharpness
flags     I      -       PSF-fit quality flags; 0 is good
nepochs   I      -       reference catalogs only, optional: frames coadded at the source
========  =====  ======  =========================================================

Header keys, looked up in the header of HDU 1 and then of the primary HDU: FIELDID, CCDID (1-16),
QID (1-4), FILTERID (1 g, 2 r, 3 i), OBSMJD (UTC MJD of the exposure, days) or else OBSJD (JD;
converted to MJD as ``OBSJD - 2400000.5`` in float64), MAGZP and MAGZPRMS (mag), INFOBITS (the
exposure quadrant's processing-quality bits; 0 is good) and PID (the processing id of the exposure
quadrant, or of the reference image). Reference catalogs need no OBSMJD, OBSJD or INFOBITS.

Every detection gets ``detid = make_detid(PID, sourceid) = PID << 20 | sourceid``, unique over the
survey because PIDs are (ZTF PIDs are about 10**12, below 2**43). A file without PID gets a PID
derived from its file name (:func:`derived_pid`).

Files are read with astropy.io.fits (no memory map: catalogs are small and read whole); FITS
big-endian columns are converted to native byte order before they go to Arrow. Times are float64.
Files are written directly (FITS 4.0 cards and a big-endian record array) rather than through
astropy, whose writer costs about 7 ms per small file; astropy reads and verifies them.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from astropy.io import fits

from catalogs.errors import InputError
from catalogs.fits_headers import read_plain_table_headers
from catalogs.schema import DETID_SOURCEID_BITS, Band, DetColumn, band_channel, make_detid, rcid_of


class PsfcatColumn:
    """Column names of the HDU 1 source table (lower case, as ZTF writes them)."""

    SOURCEID = "sourceid"
    XPOS = "xpos"  # pixel
    YPOS = "ypos"  # pixel
    RA = "ra"  # deg
    DEC = "dec"  # deg
    FLUX = "flux"  # DN
    SIGFLUX = "sigflux"  # DN
    MAG = "mag"  # mag, calibrated (MAGZP applied)
    SIGMAG = "sigmag"  # mag
    SNR = "snr"
    CHI = "chi"
    SHARP = "sharp"
    FLAGS = "flags"
    NEPOCHS = "nepochs"  # reference catalogs, optional


class PsfcatHeader:
    """Header keys of a PSF-fit catalog."""

    FIELDID = "FIELDID"
    CCDID = "CCDID"  # 1..16
    QID = "QID"  # 1..4
    FILTERID = "FILTERID"  # 1 g, 2 r, 3 i
    OBSMJD = "OBSMJD"  # UTC MJD, days
    OBSJD = "OBSJD"  # JD, days; used when OBSMJD is absent
    MAGZP = "MAGZP"  # mag
    MAGZPRMS = "MAGZPRMS"  # mag
    INFOBITS = "INFOBITS"  # 0 is good
    PID = "PID"  # processing id of the exposure quadrant (or reference image)


#: HDU holding the source table.
PSFCAT_HDU = 1

#: FITS TFORM of every column of the format (B uint8, I int16, J int32, K int64, E float32,
#: D float64).
PSFCAT_COLUMN_FORMATS: dict[str, str] = {
    PsfcatColumn.SOURCEID: "J",
    PsfcatColumn.XPOS: "E",
    PsfcatColumn.YPOS: "E",
    PsfcatColumn.RA: "D",
    PsfcatColumn.DEC: "D",
    PsfcatColumn.FLUX: "E",
    PsfcatColumn.SIGFLUX: "E",
    PsfcatColumn.MAG: "E",
    PsfcatColumn.SIGMAG: "E",
    PsfcatColumn.SNR: "E",
    PsfcatColumn.CHI: "E",
    PsfcatColumn.SHARP: "E",
    PsfcatColumn.FLAGS: "I",
    PsfcatColumn.NEPOCHS: "I",
}
#: TUNITn written for the columns that have a unit.
PSFCAT_COLUMN_UNITS: dict[str, str] = {
    PsfcatColumn.XPOS: "pixel",
    PsfcatColumn.YPOS: "pixel",
    PsfcatColumn.RA: "deg",
    PsfcatColumn.DEC: "deg",
    PsfcatColumn.FLUX: "DN",
    PsfcatColumn.SIGFLUX: "DN",
    PsfcatColumn.MAG: "mag",
    PsfcatColumn.SIGMAG: "mag",
}
#: The science-catalog columns, in file order.
PSFCAT_COLUMNS: tuple[str, ...] = tuple(c for c in PSFCAT_COLUMN_FORMATS if c != "nepochs")

#: Columns :func:`read_psfcat` and :func:`read_refpsfcat` need.
PSFCAT_REQUIRED_COLUMNS: tuple[str, ...] = (
    PsfcatColumn.SOURCEID,
    PsfcatColumn.RA,
    PsfcatColumn.DEC,
    PsfcatColumn.MAG,
    PsfcatColumn.SIGMAG,
    PsfcatColumn.SNR,
    PsfcatColumn.FLAGS,
)
REFPSFCAT_REQUIRED_COLUMNS: tuple[str, ...] = tuple(
    c for c in PSFCAT_REQUIRED_COLUMNS if c != PsfcatColumn.SNR
)
#: Header keys the readers need (besides OBSMJD or OBSJD for science catalogs; PID is optional).
PSFCAT_REQUIRED_KEYS: tuple[str, ...] = (
    PsfcatHeader.FIELDID,
    PsfcatHeader.CCDID,
    PsfcatHeader.QID,
    PsfcatHeader.FILTERID,
    PsfcatHeader.INFOBITS,
)
REFPSFCAT_REQUIRED_KEYS: tuple[str, ...] = PSFCAT_REQUIRED_KEYS[:4]

#: OBSJD - OBSMJD, days.
JD_MINUS_MJD_DAYS = 2400000.5
#: PIDs are below 2**PID_BITS so that ``PID << 20 | sourceid`` fits a positive int64.
PID_BITS = 63 - DETID_SOURCEID_BITS
#: Good values of the psfcat ``flags`` column and of the INFOBITS header key.
PSFCAT_FLAGS_GOOD = 0
INFOBITS_GOOD = 0
#: The quality rule the ingest applies (readers keep the raw values; see :func:`psfcat_quality`).
PSFCAT_FLAGS_BAD_RULE = (
    "a detection is bad if its psfcat flags != 0 or its exposure quadrant's INFOBITS != 0"
)

# --- Output columns besides DetColumn and the psfcat's sourceid, snr and nepochs ---
INFOBITS = "infobits"  # int32: the file's INFOBITS, on every row
REFID = "refid"  # int64: make_detid(PID of the reference image, sourceid)

#: Schema of :func:`read_psfcat`: the detection schema plus sourceid, snr and infobits.
PSFCAT_DETECTION_SCHEMA = pa.schema(
    [
        pa.field(DetColumn.DETID, pa.int64(), nullable=False),
        pa.field(DetColumn.RA, pa.float64(), nullable=False),
        pa.field(DetColumn.DEC, pa.float64(), nullable=False),
        pa.field(DetColumn.MJD, pa.float64(), nullable=False),
        pa.field(DetColumn.BAND, pa.int8(), nullable=False),
        pa.field(DetColumn.MAG, pa.float32(), nullable=False),
        pa.field(DetColumn.MAGERR, pa.float32(), nullable=False),
        pa.field(DetColumn.FLAGS, pa.int32(), nullable=False),
        pa.field(DetColumn.FIELDID, pa.int32(), nullable=False),
        pa.field(DetColumn.RCID, pa.int32(), nullable=False),
        pa.field(DetColumn.OBJECTID, pa.int64()),
        pa.field(DetColumn.SOURCE_FILE, pa.string(), nullable=False),
        pa.field(DetColumn.SOURCE_ROW, pa.int64(), nullable=False),
        pa.field(PsfcatColumn.SOURCEID, pa.int32(), nullable=False),
        pa.field(PsfcatColumn.SNR, pa.float32(), nullable=False),
        pa.field(INFOBITS, pa.int32(), nullable=False),
    ]
)

#: Schema of :func:`read_refpsfcat`.
REFPSFCAT_SCHEMA = pa.schema(
    [
        pa.field(REFID, pa.int64(), nullable=False),
        pa.field(DetColumn.RA, pa.float64(), nullable=False),
        pa.field(DetColumn.DEC, pa.float64(), nullable=False),
        pa.field(DetColumn.BAND, pa.int8(), nullable=False),
        pa.field(DetColumn.MAG, pa.float32(), nullable=False),
        pa.field(DetColumn.MAGERR, pa.float32(), nullable=False),
        pa.field(DetColumn.FIELDID, pa.int32(), nullable=False),
        pa.field(DetColumn.RCID, pa.int32(), nullable=False),
        pa.field(DetColumn.FLAGS, pa.int32(), nullable=False),
        pa.field(PsfcatColumn.NEPOCHS, pa.int32()),
        pa.field(DetColumn.SOURCE_FILE, pa.string(), nullable=False),
        pa.field(DetColumn.SOURCE_ROW, pa.int64(), nullable=False),
    ]
)


def psfcat_file_name(obs_mjd: float, fieldid: int, filterid: int, ccdid: int, qid: int) -> str:
    """ZTF science catalog name, e.g. ``ztf_20180818123456_000250_zg_c01_o_q1_psfcat.fits``.

    The first part is the UTC date and the fraction of the day (6 digits) of ``obs_mjd`` (days).
    """
    band = Band(filterid).name
    return f"ztf_{_filefracday(obs_mjd)}_{fieldid:06d}_z{band}_c{ccdid:02d}_o_q{qid}_psfcat.fits"


def refpsfcat_file_name(fieldid: int, filterid: int, ccdid: int, qid: int) -> str:
    """ZTF reference catalog name, e.g. ``ztf_000250_zg_c01_q1_refpsfcat.fits``."""
    return f"ztf_{fieldid:06d}_z{Band(filterid).name}_c{ccdid:02d}_q{qid}_refpsfcat.fits"


def _filefracday(mjd: float) -> str:
    days = math.floor(mjd)
    fraction = min(int((mjd - days) * 1_000_000), 999_999)
    # Gregorian date of an MJD (Fliegel and Van Flandern) without astropy.time.
    j = days + 2400001 + 68569
    c = 4 * j // 146097
    j -= (146097 * c + 3) // 4
    y = 4000 * (j + 1) // 1461001
    j = j - 1461 * y // 4 + 31
    m = 80 * j // 2447
    day = j - 2447 * m // 80
    j = m // 11
    month = m + 2 - 12 * j
    year = 100 * (c - 49) + y + j
    return f"{year:04d}{month:02d}{day:02d}{fraction:06d}"


def derived_pid(path: str | os.PathLike) -> int:
    """A stable PID for a file whose header has none: 43 bits of the BLAKE2b hash of its name.

    Only the base name counts, so a file keeps its PID when moved. Two of n such files share a
    PID with probability about n**2 / 2**44 (2e-6 for 4,000 files).
    """
    digest = hashlib.blake2b(Path(path).name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << PID_BITS) - 1)


def psfcat_quality(flags: npt.ArrayLike, infobits: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Good-detection mask of :data:`PSFCAT_FLAGS_BAD_RULE`.

    Parameters
    ----------
    flags : int array, shape (n,)
        psfcat ``flags`` of each detection.
    infobits : int array, shape (n,) or scalar
        INFOBITS of each detection's exposure quadrant.

    Returns
    -------
    bool array, shape (n,)
        True where ``flags == 0`` and ``infobits == 0``.
    """
    return (np.asarray(flags) == PSFCAT_FLAGS_GOOD) & (np.asarray(infobits) == INFOBITS_GOOD)


# --- writing ---

_FITS_BLOCK_BYTES = 2880
_FITS_CARD_BYTES = 80
_FITS_KEY = re.compile(r"^[A-Z0-9_-]{1,8}$")
#: Big-endian numpy dtype of each TFORM letter.
_TFORM_DTYPES = {"B": ">u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}
_DTYPE_TFORMS = {np.dtype(v).newbyteorder("="): k for k, v in _TFORM_DTYPES.items()}


def _fits_card(key: str, value: object, comment: str | None = None) -> str:
    """One 80-character FITS header card in fixed format."""
    if not _FITS_KEY.match(key):
        raise ValueError(f"FITS header key {key!r}: need 1-8 characters A-Z 0-9 _ -")
    if isinstance(value, bool | np.bool_):
        text = ("T" if value else "F").rjust(20)
    elif isinstance(value, int | np.integer):
        text = str(int(value)).rjust(20)
    elif isinstance(value, float | np.floating):
        if not math.isfinite(value):
            raise ValueError(f"FITS header key {key!r}: value must be finite, got {value}")
        text = repr(float(value)).upper()
        text = (text if ("." in text or "E" in text) else text + ".0").rjust(20)
    elif isinstance(value, str):
        text = ("'" + value.replace("'", "''").ljust(8) + "'").ljust(20)
    else:
        raise TypeError(f"FITS header key {key!r}: cannot write a {type(value).__name__}")
    card = f"{key:<8}= {text}"
    if comment:
        card += f" / {comment}"
    if len(card) > _FITS_CARD_BYTES:
        raise ValueError(f"FITS header key {key!r}: card longer than 80 characters")
    return card.ljust(_FITS_CARD_BYTES)


def _fits_header_bytes(cards: list[str]) -> bytes:
    text = "".join(cards) + "END".ljust(_FITS_CARD_BYTES)
    padded = -(-len(text) // _FITS_BLOCK_BYTES) * _FITS_BLOCK_BYTES
    return text.ljust(padded).encode("ascii")


@functools.cache
def _primary_cards() -> tuple[str, ...]:
    return (
        _fits_card("SIMPLE", True, "conforms to FITS standard"),
        _fits_card("BITPIX", 8),
        _fits_card("NAXIS", 0),
        _fits_card("EXTEND", True),
    )


@functools.lru_cache(maxsize=64)
def _table_cards(
    tforms: tuple[tuple[str, str], ...], row_bytes: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Binary-table header cards before and after NAXIS2."""
    before = (
        _fits_card("XTENSION", "BINTABLE", "binary table extension"),
        _fits_card("BITPIX", 8),
        _fits_card("NAXIS", 2),
        _fits_card("NAXIS1", row_bytes, "bytes per row"),
    )
    after = [_fits_card("PCOUNT", 0), _fits_card("GCOUNT", 1), _fits_card("TFIELDS", len(tforms))]
    for k, (name, tform) in enumerate(tforms, start=1):
        after.append(_fits_card(f"TTYPE{k}", name))
        after.append(_fits_card(f"TFORM{k}", tform))
        if name in PSFCAT_COLUMN_UNITS:
            after.append(_fits_card(f"TUNIT{k}", PSFCAT_COLUMN_UNITS[name]))
    return before, tuple(after)


def write_psfcat(
    path: str | os.PathLike, columns: Mapping[str, npt.ArrayLike], header: Mapping[str, object]
) -> None:
    """Write a PSF-fit catalog: ``header`` in the primary HDU, ``columns`` as the HDU 1 table.

    Writes what it is given, in the given order, without checking that the catalog is complete
    (the readers check), so that tests can write broken files too.

    Parameters
    ----------
    path : str or path
        File to write (replaced if it exists).
    columns : mapping of str to array, each shape (n,)
        Table columns. Columns of :data:`PSFCAT_COLUMN_FORMATS` are stored in their TFORM; other
        columns in the TFORM of their dtype (uint8, int16, int32, int64, float32, float64).
    header : mapping of str to int, float, str or bool
        Primary-header keys (FIELDID, CCDID, QID, FILTERID, OBSMJD, MAGZP, MAGZPRMS, INFOBITS,
        PID, ...); floats are written with all their digits.

    Raises
    ------
    ValueError
        If columns differ in length, an integer value does not fit its TFORM, or a header key or
        value cannot be written.
    """
    arrays = {name: np.asarray(values) for name, values in columns.items()}
    lengths = {a.shape for a in arrays.values()}
    if len(lengths) > 1 or any(len(s) != 1 for s in lengths):
        raise ValueError(f"write_psfcat {path}: columns must be 1-d of one length, got {lengths}")
    n_rows = next(iter(lengths))[0] if lengths else 0
    tforms = {}
    for name, array in arrays.items():
        tform = PSFCAT_COLUMN_FORMATS.get(name) or _DTYPE_TFORMS.get(array.dtype)
        if tform is None:
            raise ValueError(f"write_psfcat {path}: column {name!r} has unsupported {array.dtype}")
        tforms[name] = tform
    record = np.empty(n_rows, dtype=[(name, _TFORM_DTYPES[t]) for name, t in tforms.items()])
    for name, array in arrays.items():
        target = record.dtype[name]
        if target.kind in "iu" and array.size:
            info = np.iinfo(target)
            if array.min() < info.min or array.max() > info.max:
                raise ValueError(
                    f"write_psfcat {path}: column {name!r} does not fit TFORM {tforms[name]}"
                )
        record[name] = array
    primary = [*_primary_cards(), *(_fits_card(key, value) for key, value in header.items())]
    before, after = _table_cards(tuple(tforms.items()), record.dtype.itemsize)
    table = [*before, _fits_card("NAXIS2", n_rows, "rows"), *after]
    data = record.tobytes()
    with open(path, "wb") as f:
        f.write(_fits_header_bytes(primary))
        f.write(_fits_header_bytes(table))
        f.write(data)
        f.write(b"\0" * (-len(data) % _FITS_BLOCK_BYTES))


# --- reading ---


class _Catalog:
    """The checked HDU 1 table of a catalog file and its header keys."""

    def __init__(
        self, path: str, required_columns: tuple[str, ...], optional_columns: tuple[str, ...] = ()
    ) -> None:
        self.path = path
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise InputError(path, "input file does not exist") from None
        if size == 0:
            raise InputError(path, "file is empty (0 bytes), not a FITS file")
        self._wanted = (*required_columns, *optional_columns)
        self._required = required_columns
        try:
            plain = read_plain_table_headers(path)
            raw_dtype = None if plain is None else _raw_dtype(plain.table)
            if raw_dtype is not None:
                # A plain file of plain columns: headers and rows read straight from the file
                # (astropy's header and table machinery cost ~5-15 ms a file).
                self._headers = (plain.table, plain.primary)
                self._read_rows(raw_dtype, plain.data_offset)
                return
            with fits.open(path, memmap=False) as hdus:
                if len(hdus) <= PSFCAT_HDU or not isinstance(hdus[PSFCAT_HDU], fits.BinTableHDU):
                    raise InputError(
                        path,
                        f"HDU {PSFCAT_HDU} (the binary table of sources) is missing; "
                        f"found {len(hdus)} HDU(s)",
                    )
                table = hdus[PSFCAT_HDU]
                self._headers = (table.header, hdus[0].header)
                raw_dtype = _raw_dtype(table.header) if _is_plain_fits(path) else None
                if raw_dtype is not None:
                    self._read_rows(raw_dtype, hdus.fileinfo(PSFCAT_HDU)["datLoc"])
                else:  # scaled or vector columns: let astropy decode them
                    wanted = self._wanted_columns()
                    data = table.data
                    n_rows = 0 if data is None else len(data)
                    self.columns = {
                        c: _native(data.field(stored)) if n_rows else np.empty(0)
                        for c, stored in wanted.items()
                    }
                    self.n_rows = n_rows
        except InputError:
            raise
        except (OSError, ValueError, TypeError, IndexError, KeyError, fits.VerifyError) as err:
            raise InputError(path, f"cannot read as FITS ({err})") from err

    def _wanted_columns(self) -> dict[str, str]:
        """Lower-case name -> stored name of the columns to read; a missing required one fails."""
        names = _column_names(self._headers[0])
        for column in self._required:
            if column not in names:
                raise InputError(
                    self.path,
                    f"required column is missing from HDU {PSFCAT_HDU}; a PSF-fit "
                    f"catalog needs {list(self._required)}",
                    column=column,
                )
        return {c: names[c] for c in self._wanted if c in names}

    def _read_rows(self, raw_dtype: np.dtype, offset: int) -> None:
        wanted = self._wanted_columns()
        n_rows = int(self._headers[0]["NAXIS2"])
        rows = np.fromfile(self.path, dtype=raw_dtype, count=n_rows, offset=offset)
        if rows.size != n_rows:
            raise InputError(self.path, f"HDU {PSFCAT_HDU} is truncated")
        self.columns = {c: _native(rows[stored]) for c, stored in wanted.items()}
        self.n_rows = n_rows

    def has(self, key: str) -> bool:
        return any(key in h for h in self._headers)

    def key(self, key: str, lo: int | None = None, hi: int | None = None) -> int | float:
        for header in self._headers:
            if key in header:
                value = header[key]
                break
        else:
            raise InputError(
                self.path,
                f"required header key {key!r} is missing (looked in HDU {PSFCAT_HDU} and the "
                "primary HDU)",
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(self.path, f"header key {key!r} must be a number, got {value!r}")
        if lo is not None and not (lo <= value <= hi and value == int(value)):
            raise InputError(
                self.path, f"header key {key!r} must be an integer in [{lo}, {hi}], got {value!r}"
            )
        return value

    def column(self, name: str, dtype: type) -> np.ndarray:
        return self.columns[name].astype(dtype, copy=False)

    def pid(self, file_index_hint: int | None) -> int:
        if self.has(PsfcatHeader.PID):
            return int(self.key(PsfcatHeader.PID, 0, (1 << PID_BITS) - 1))
        if file_index_hint is not None:
            return int(file_index_hint)
        return derived_pid(self.path)

    def sourceid(self) -> npt.NDArray[np.int64]:
        sourceid = self.column(PsfcatColumn.SOURCEID, np.int64)
        bad = np.flatnonzero((sourceid < 0) | (sourceid >= 1 << DETID_SOURCEID_BITS))
        if bad.size:
            raise InputError(
                self.path,
                f"must be in [0, 2**{DETID_SOURCEID_BITS}), got {sourceid[bad[0]]}",
                column=PsfcatColumn.SOURCEID,
                row=int(bad[0]),
            )
        order = np.sort(sourceid)
        repeated = np.flatnonzero(order[1:] == order[:-1])
        if repeated.size:
            value = order[repeated[0]]
            raise InputError(
                self.path,
                f"sourceid {value} appears more than once; detids would not be unique",
                column=PsfcatColumn.SOURCEID,
                row=int(np.flatnonzero(sourceid == value)[1]),
            )
        return sourceid

    def location(self) -> tuple[int, int, int]:
        """(fieldid, rcid, band channel) from the header."""
        fieldid = int(self.key(PsfcatHeader.FIELDID, 0, 2**31 - 1))
        ccdid = int(self.key(PsfcatHeader.CCDID, 1, 16))
        qid = int(self.key(PsfcatHeader.QID, 1, 4))
        filterid = int(self.key(PsfcatHeader.FILTERID, min(Band), max(Band)))
        return fieldid, rcid_of(ccdid, qid), band_channel(filterid)

    def table(self, schema: pa.Schema, location: tuple[int, int, int], own: dict) -> pa.Table:
        """The rows in ``schema``: the columns both readers share, and the reader's ``own``."""
        fieldid, rcid, channel = location
        n = self.n_rows
        columns = {
            DetColumn.RA: self.column(PsfcatColumn.RA, np.float64),
            DetColumn.DEC: self.column(PsfcatColumn.DEC, np.float64),
            DetColumn.BAND: np.full(n, channel, dtype=np.int8),
            DetColumn.MAG: self.column(PsfcatColumn.MAG, np.float32),
            DetColumn.MAGERR: self.column(PsfcatColumn.SIGMAG, np.float32),
            DetColumn.FLAGS: self.column(PsfcatColumn.FLAGS, np.int32),
            DetColumn.FIELDID: np.full(n, fieldid, dtype=np.int32),
            DetColumn.RCID: np.full(n, rcid, dtype=np.int32),
            DetColumn.SOURCE_FILE: _repeat(self.path, n, pa.string()),
            DetColumn.SOURCE_ROW: np.arange(n, dtype=np.int64),
        } | own
        return pa.Table.from_arrays([pa.array(columns[f.name]) for f in schema], schema=schema)


def _is_plain_fits(path: str) -> bool:
    """True for an uncompressed FITS file (not gzip), whose rows can be read in place."""
    with open(path, "rb") as f:
        return f.read(6) == b"SIMPLE"


_SIMPLE_TFORM = re.compile(r"^1?([BIJKED])$")


def _column_names(header: fits.Header) -> dict[str, str]:
    """Lower-case column name -> name as stored (FITS names are case-insensitive)."""
    n_fields = int(header.get("TFIELDS", 0))
    stored = [str(header.get(f"TTYPE{k}", f"col{k}")) for k in range(1, n_fields + 1)]
    return {name.lower(): name for name in stored}


def _raw_dtype(header: fits.Header) -> np.dtype | None:
    """Big-endian record dtype of a table of plain scalar columns, or None."""
    n_fields = int(header.get("TFIELDS", 0))
    fields = []
    for k in range(1, n_fields + 1):
        match = _SIMPLE_TFORM.match(str(header.get(f"TFORM{k}", "")).strip().upper())
        if match is None or f"TSCAL{k}" in header or f"TZERO{k}" in header:
            return None
        fields.append((str(header.get(f"TTYPE{k}", f"col{k}")), _TFORM_DTYPES[match.group(1)]))
    try:
        dtype = np.dtype(fields)
    except (ValueError, TypeError):  # duplicate or empty names
        return None
    return dtype if dtype.itemsize == int(header.get("NAXIS1", -1)) else None


def _native(array: np.ndarray) -> np.ndarray:
    """The values of a FITS column in native byte order (a copy)."""
    array = np.asarray(array)
    return array.astype(array.dtype.newbyteorder("="))


def _repeat(value: object, n: int, dtype: pa.DataType) -> pa.Array:
    return pa.repeat(pa.scalar(value, type=dtype), n)


def read_psfcat(path: str | os.PathLike, file_index_hint: int | None = None) -> pa.Table:
    """Read a science PSF-fit catalog into the detection schema.

    Parameters
    ----------
    path : str or path
        The ``*_psfcat.fits`` file.
    file_index_hint : int, optional
        Used only when the header has no PID: the PID is then this number (the file's index in
        the ingest's input list, unique within one ingest and far below real ZTF PIDs, about
        10**12) instead of :func:`derived_pid` of the file name.

    Returns
    -------
    pyarrow.Table
        :data:`PSFCAT_DETECTION_SCHEMA`, one row per source in file order: detid (int64,
        ``PID << 20 | sourceid``), ra, dec (float64, deg), mjd (float64, UTC MJD of the exposure,
        days), band (int8 channel: 0 g, 1 r, 2 i), mag, magerr (float32, calibrated mag and its
        error), flags (int32, raw psfcat flags), fieldid, rcid (int32), objectid (int64, all
        null), source_file (str, ``path`` as given), source_row (int64, 0-based row in HDU 1),
        sourceid (int32), snr (float32), infobits (int32, the header's INFOBITS on every row).
        No quality cut is applied; see :func:`psfcat_quality`.

    Raises
    ------
    InputError
        Naming the file, and the column or header key, when the file is missing, empty, not
        FITS, has no HDU 1 table, lacks a column of :data:`PSFCAT_REQUIRED_COLUMNS` or a key of
        :data:`PSFCAT_REQUIRED_KEYS` (or both OBSMJD and OBSJD), or has a bad value there.
    """
    path = os.fspath(path)
    cat = _Catalog(path, PSFCAT_REQUIRED_COLUMNS)
    location = cat.location()
    if cat.has(PsfcatHeader.OBSMJD):
        mjd = float(cat.key(PsfcatHeader.OBSMJD))
    elif cat.has(PsfcatHeader.OBSJD):
        mjd = float(np.float64(cat.key(PsfcatHeader.OBSJD)) - JD_MINUS_MJD_DAYS)
    else:
        raise InputError(
            path,
            f"required header key {PsfcatHeader.OBSMJD!r} (or {PsfcatHeader.OBSJD!r}) is missing",
        )
    infobits = int(cat.key(PsfcatHeader.INFOBITS, -(2**31), 2**31 - 1))
    pid = cat.pid(file_index_hint)
    sourceid = cat.sourceid()
    n = cat.n_rows
    own = {
        DetColumn.DETID: make_detid(pid, sourceid),
        DetColumn.MJD: np.full(n, mjd, dtype=np.float64),
        DetColumn.OBJECTID: pa.nulls(n, pa.int64()),
        PsfcatColumn.SOURCEID: sourceid.astype(np.int32),
        PsfcatColumn.SNR: cat.column(PsfcatColumn.SNR, np.float32),
        INFOBITS: np.full(n, infobits, dtype=np.int32),
    }
    return cat.table(PSFCAT_DETECTION_SCHEMA, location, own)


def read_refpsfcat(path: str | os.PathLike) -> pa.Table:
    """Read a reference PSF-fit catalog.

    Parameters
    ----------
    path : str or path
        The ``*_refpsfcat.fits`` file.

    Returns
    -------
    pyarrow.Table
        :data:`REFPSFCAT_SCHEMA`, one row per source in file order: refid (int64,
        ``PID << 20 | sourceid`` with the reference image's PID, or :func:`derived_pid` of the
        file name), ra, dec (float64, deg), band (int8 channel), mag, magerr (float32, mag),
        fieldid, rcid, flags (int32), nepochs (int32, null when the file has no such column),
        source_file (str), source_row (int64).

    Raises
    ------
    InputError
        As :func:`read_psfcat`, for :data:`REFPSFCAT_REQUIRED_COLUMNS` and
        :data:`REFPSFCAT_REQUIRED_KEYS`.
    """
    path = os.fspath(path)
    cat = _Catalog(path, REFPSFCAT_REQUIRED_COLUMNS, (PsfcatColumn.NEPOCHS,))
    location = cat.location()
    refid = make_detid(cat.pid(None), cat.sourceid())
    if PsfcatColumn.NEPOCHS in cat.columns:
        nepochs = cat.column(PsfcatColumn.NEPOCHS, np.int32)
    else:
        nepochs = pa.nulls(cat.n_rows, pa.int32())
    own = {REFID: refid, PsfcatColumn.NEPOCHS: nepochs}
    return cat.table(REFPSFCAT_SCHEMA, location, own)
