"""The on-disk vocabulary of varsky: column names, band codes, flag rules and HEALPix orders.

Everything that names a column or a code lives here, once. Other modules import these names.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

import numpy as np
import pyarrow as pa

# HEALPix: nested scheme; `_healpix_29` is the order-29 index used by hats and lsdb.
HEALPIX_COLUMN = "_healpix_29"
HEALPIX_ORDER = 29


class Band(IntEnum):
    """ZTF filter codes as stored in `filterid` (1 g, 2 r, 3 i)."""

    g = 1
    r = 2
    i = 3


#: Band names in channel order of the dm-dt image tensor.
BAND_NAMES: tuple[str, ...] = tuple(b.name for b in Band)


def band_channel(filterid: int) -> int:
    """Return the image channel (0-based) of a ZTF filterid."""
    return int(filterid) - 1


# --- IRSA DR light-curve Parquet (one row per objectid = field, quadrant and filter) ---
class DRColumn:
    """Column names of the IRSA ZTF DR light-curve Parquet files."""

    OBJECTID = "objectid"
    FILTERID = "filterid"
    FIELDID = "fieldid"
    RCID = "rcid"
    RA = "objra"  # degrees
    DEC = "objdec"  # degrees
    NEPOCHS = "nepochs"
    HMJD = "hmjd"  # heliocentric MJD, days
    MAG = "mag"  # mag
    MAGERR = "magerr"  # mag
    CLRCOEFF = "clrcoeff"
    CATFLAGS = "catflags"


#: DR columns varsky reads, with the Arrow type family each must have ("int", "float",
#: "list<float>", "list<int>"); widths vary between releases and copies (hmjd is float32 in some
#: copies, float64 in IRSA's files). `nepochs` and `clrcoeff` are not needed and not read.
DR_REQUIRED_COLUMNS: dict[str, str] = {
    DRColumn.OBJECTID: "int",
    DRColumn.FILTERID: "int",
    DRColumn.FIELDID: "int",
    DRColumn.RCID: "int",
    DRColumn.RA: "float",
    DRColumn.DEC: "float",
    DRColumn.HMJD: "list<float>",
    DRColumn.MAG: "list<float>",
    DRColumn.MAGERR: "list<float>",
    DRColumn.CATFLAGS: "list<int>",
}

#: ZTF's recommendation: keep epochs whose catflags are exactly 0.
CATFLAGS_GOOD = 0

#: Default minimum number of good epochs (all bands together) for an object to be classified.
DEFAULT_MIN_EPOCHS = 20

# --- Columns varsky adds ---
SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"  # 0-based row index within source_file
RA = "ra"  # degrees, ICRS
DEC = "dec"  # degrees, ICRS
LIGHTCURVE = "lightcurve"
BAND = "band"  # image channel of an epoch: 0 g, 1 r, 2 i
REJECT_REASON = "reject_reason"
N_GOOD = "n_good"  # good epochs, all bands
N_FLAGGED = "n_epochs_flagged"  # epochs cut by catflags != 0
N_NONFINITE = "n_epochs_nonfinite"  # epochs cut: non-finite time, mag or magerr, or magerr <= 0
N_DUPLICATE = "n_epochs_duplicate"  # epochs that repeat an earlier one exactly (time, mag, magerr)
N_THINNED = "n_epochs_thinned"  # good epochs left out of light curves longer than the cap


def n_good_column(band: str) -> str:
    """Name of the per-band good-epoch count column, e.g. ``n_good_g``."""
    return f"n_good_{band}"


def probability_column(class_name: str) -> str:
    """Name of a class probability column, e.g. ``p_rrab``."""
    return f"p_{class_name}"


PREDICTED_CLASS = "predicted_class"
PREDICTED_SCORE = "predicted_score"


def median_mag_column(band: str) -> str:
    """Name of a band's median magnitude column of the catalog, e.g. ``median_mag_g``."""
    return f"median_mag_{band}"


P_VARIABLE = "p_variable"  # the variability stage's probability that the object varies
P_TRANSIENT = "p_transient"  # the transient head's probability that the light curve is a transient
SETTLED = "settled_as_constant"  # the variability stage wrote it constant; the network did not run
VARSKY_VERSION_COLUMN = "varsky_version"
MODEL_NAME_COLUMN = "model_name"
MODEL_SHA256 = "model_sha256"
DMDT_GRID = "dmdt_grid"
INPUT_CATALOG = "input_catalog"  # name and release of the input light curves, e.g. "ZTF DR5"
INPUT_FILE = "input_file"
PROCESSING_TIME = "processing_time_utc"  # timestamp[us, UTC]

#: Version of the classification catalog's columns (property ``varsky_schema_version``): bumped
#: whenever a column is added, removed, renamed or changes type.
CLASSIFICATION_SCHEMA_VERSION = "3"


class RejectReason:
    """Reasons an input row goes to the rejects table instead of the output."""

    TOO_FEW_EPOCHS = "too_few_good_epochs"
    LENGTH_MISMATCH = "array_length_mismatch"
    BAD_COORDINATES = "bad_coordinates"
    BAD_FILTERID = "unknown_filterid"
    NULL_OBJECTID = "null_objectid"
    DUPLICATE_OBJECTID = "duplicate_objectid"  # the objectid came earlier (file, row) already


#: Light curve after quality cuts, as a struct of lists (the nested layout lsdb loads lazily).
LIGHTCURVE_STRUCT = pa.struct(
    [
        pa.field(DRColumn.HMJD, pa.list_(pa.float64())),
        pa.field(DRColumn.MAG, pa.list_(pa.float32())),
        pa.field(DRColumn.MAGERR, pa.list_(pa.float32())),
        pa.field(BAND, pa.list_(pa.int8())),
    ]
)


# --- Detections: one row per single-epoch measurement (psfcat rows, generic long format) ---
class DetColumn:
    """Columns of the internal long-format detection table all detection readers produce."""

    DETID = "detid"  # int64, unique per detection: (PID << 20) | sourceid for psfcat
    RA = "ra"  # float64, degrees
    DEC = "dec"  # float64, degrees
    MJD = "mjd"  # float64, days: observation epoch (UTC MJD), never float32
    BAND = "band"  # int8 image channel: 0 g, 1 r, 2 i
    MAG = "mag"  # float32, mag (calibrated)
    MAGERR = "magerr"  # float32, mag
    FLAGS = "flags"  # int32, survey quality flags; 0 is good
    FIELDID = "fieldid"  # int32
    RCID = "rcid"  # int32, readout channel (CCD quadrant): 4 * (ccdid - 1) + (qid - 1)
    OBJECTID = "objectid"  # int64, nullable: an object id given by the input, if any
    SOURCE_FILE = SOURCE_FILE
    SOURCE_ROW = SOURCE_ROW


#: Bits of a detection's `sourceid` in its detid; the rest is the exposure-quadrant PID.
DETID_SOURCEID_BITS = 20


def make_detid(pid, sourceid):
    """Detection id from the exposure-quadrant PID and the row's sourceid (ints or arrays).

    An int for int arguments, else an int64 array (the arguments broadcast).
    """
    shifted_pid = np.asarray(pid, np.int64) << np.int64(DETID_SOURCEID_BITS)
    detid = shifted_pid | np.asarray(sourceid, np.int64)
    return int(detid) if detid.ndim == 0 else detid


def rcid_of(ccdid: int, qid: int) -> int:
    """ZTF readout-channel id (0..63) of a CCD (1..16) and quadrant (1..4)."""
    return 4 * (int(ccdid) - 1) + (int(qid) - 1)


#: Default association radius, arcsec.
DEFAULT_RADIUS_ARCSEC = 1.5

# --- The light-curve catalog `varsky ingest` writes (one row per sky object) ---
N_EPOCHS = "n_epochs"
SOURCE_IDS = "source_ids"  # list<int64>: reference ids or DR objectids merged into the object


def n_epochs_column(band: str) -> str:
    """Name of the per-band epoch count column of the light-curve catalog, e.g. ``n_epochs_g``."""
    return f"n_epochs_{band}"


#: Light curve of the ingest catalog: the classify struct plus each epoch's flags and detid
#: (psfcat detid, the DR objectid the epoch came from, or the generated detection id).
INGEST_LIGHTCURVE_STRUCT = pa.struct(
    [
        *LIGHTCURVE_STRUCT,
        pa.field("flags", pa.list_(pa.int32())),
        pa.field("detid", pa.list_(pa.int64())),
    ]
)


class DetectionRejectReason:
    """Reasons a detection (or DR epoch) goes to the ingest rejects table."""

    FLAGGED = "flagged"  # survey flags (catflags != 0; psfcat flags or INFOBITS != 0)
    NONFINITE = "nonfinite"  # non-finite time, position, mag or magerr
    BAD_BAND = "unknown_band"
    BAND_DROPPED = "band_dropped"  # the band map says not to use this band
    NO_OBJECT = "no_reference_within_radius"
    DUPLICATE = "duplicate_epoch"  # same detid, or same object, band, time and mag, as a kept one
    NON_DETECTION = "non_detection"  # an alert's upper limit: mag holds diffmaglim, no magerr
    NEGATIVE_DIFFERENCE = "negative_difference"  # an alert fainter than its reference image


# --- The class taxonomy ---
class VariabilityClass(StrEnum):
    """The classes the model tells apart, in output order."""

    constant = "constant"
    rrab = "rrab"  # RR Lyrae, fundamental mode
    rrc = "rrc"  # RR Lyrae, first overtone
    cepheid = "cepheid"
    delta_scuti = "delta_scuti"
    ew = "ew"  # W UMa contact binary
    ea = "ea"  # Algol detached eclipsing binary
    mira = "mira"
    semiregular = "semiregular"
    rotational = "rotational"  # spotted rotating star
    agn = "agn"
    yso = "yso"  # young stellar object: dippers and bursters
    cv = "cv"  # cataclysmic variable (dwarf nova)
    flare = "flare"  # flaring star
    bogus = "bogus"  # artefacts of calibration or extraction


#: Class names in model output order.
CLASS_NAMES: tuple[str, ...] = tuple(c.value for c in VariabilityClass)


class TransientClass(StrEnum):
    """The transient classes of a model with a transient head, after the variability classes.

    Novae are not among them: a nova is a cataclysmic variable, so the head's nova probability
    goes to ``p_cv`` (see :mod:`udfs.model.transients`).
    """

    sn_ia = "sn_ia"  # thermonuclear supernova (Ia, with 91T, 91bg, Iax, CSM)
    sn_ii = "sn_ii"  # hydrogen-rich core collapse (II, IIP, IIn, IIb)
    sn_ibc = "sn_ibc"  # stripped-envelope core collapse (Ib, Ic, Ic-BL, Ibn, Icn)
    slsn = "slsn"  # superluminous supernova (I and II)
    tde = "tde"  # tidal disruption event
    transient_other = "transient_other"  # a transient of none of these kinds (ILRT, LRN, LBV, ...)


#: Transient class names, in output order (after :data:`CLASS_NAMES`).
TRANSIENT_CLASS_NAMES: tuple[str, ...] = tuple(c.value for c in TransientClass)

#: Classes that are not astrophysical variability (the census counts the others as variable).
NON_VARIABLE_CLASSES = frozenset({VariabilityClass.constant.value, VariabilityClass.bogus.value})


# --- varsky's keys in hats.properties (collection.properties for the first two) ---
class Property(StrEnum):
    """The ``varsky_*`` keys varsky writes into the properties of the catalogs it makes."""

    SCHEMA_VERSION = "varsky_schema_version"
    VERSION = "varsky_version"
    MODEL_NAME = "varsky_model_name"
    MODEL_SHA256 = "varsky_model_sha256"
    MODEL_DIR = "varsky_model_dir"
    DMDT_GRID = "varsky_dmdt_grid"
    CLASSES = "varsky_classes"
    INPUT_CATALOGS = "varsky_input_catalogs"
    INPUTS = "varsky_inputs"  # comma-separated absolute paths
    PROCESSING_TIME = "varsky_processing_time_utc"
    JOB_ARGUMENTS = "varsky_job_arguments"  # JSON
    INPUT_FORMAT = "varsky_input_format"  # of a light-curve catalog (ingest)
    RADIUS_ARCSEC = "varsky_radius_arcsec"
    BAND_MAP = "varsky_band_map"  # JSON
    VARIABILITY_STAGE = "varsky_variability_stage"  # JSON: on/off, threshold, sha256, calibration
    ENGINE = "varsky_engine"  # classify: spark or dask


# --- Kinds of light-curve input (catalogs.input_files, udfs.pipeline) ---
class InputKind(StrEnum):
    """What the rows of a partition are."""

    DR = "dr"  # IRSA DR light-curve Parquet rows (catflags and all)
    HATS_DR = "hats_dr"  # IRSA's DR light curves in HATS layout (a nested lightcurve column)
    CATALOG = "catalog"  # a `varsky ingest` light-curve catalog (already cut)


# --- The classification catalog's rows ---
#: Columns carried from the light-curve rows into the classification rows.
CARRIED_COLUMNS: tuple[str, ...] = (
    DRColumn.OBJECTID,
    RA,
    DEC,
    HEALPIX_COLUMN,
    N_GOOD,
    *[n_good_column(b) for b in BAND_NAMES],
    SOURCE_FILE,
)

#: Columns of the kept (not rejected) light-curve rows every later stage reads.
KEPT_COLUMNS: tuple[str, ...] = (*CARRIED_COLUMNS, LIGHTCURVE)
#: Where a light-curve row came from, by object: what the repeated-object check reports.
ROW_ORIGIN_COLUMNS: tuple[str, ...] = (DRColumn.OBJECTID, SOURCE_FILE, SOURCE_ROW)

#: Provenance columns that take the place of ``source_file`` in the catalog, in order.
PROVENANCE_FIELDS: tuple[pa.Field, ...] = (
    pa.field(INPUT_CATALOG, pa.string()),
    pa.field(INPUT_FILE, pa.string()),
    pa.field(VARSKY_VERSION_COLUMN, pa.string(), nullable=False),
    pa.field(MODEL_NAME_COLUMN, pa.string(), nullable=False),
    pa.field(MODEL_SHA256, pa.string(), nullable=False),
    pa.field(DMDT_GRID, pa.string(), nullable=False),
    pa.field(PROCESSING_TIME, pa.timestamp("us", tz="UTC"), nullable=False),
)


def provenance_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` without ``source_file``, with the :data:`PROVENANCE_FIELDS` at the end."""
    return pa.schema([f for f in schema if f.name != SOURCE_FILE] + list(PROVENANCE_FIELDS))


def classification_schema(classes, carried: pa.Schema, provenance: bool = True) -> pa.Schema:
    """Arrow schema of the classification catalog's rows for a model's ``classes``.

    The :data:`CARRIED_COLUMNS` (typed as in ``carried``), one float32 probability per class
    (null where the network did not run: objects settled as constant), the predicted class and
    its score, the variability stage's ``p_variable`` (null for a model without the stage),
    whether it settled the object, the transient head's ``p_transient`` (null for a model without
    a head and for settled objects), and each band's median magnitude (mag, null where the band
    has no epoch); then, with ``provenance``, :func:`provenance_schema`.
    """
    schema = pa.schema(
        [carried.field(c) for c in CARRIED_COLUMNS]
        + [pa.field(probability_column(c), pa.float32()) for c in classes]
        + [pa.field(PREDICTED_CLASS, pa.string()), pa.field(PREDICTED_SCORE, pa.float32())]
        + [pa.field(P_VARIABLE, pa.float32()), pa.field(SETTLED, pa.bool_())]
        + [pa.field(P_TRANSIENT, pa.float32())]
        + [pa.field(median_mag_column(b), pa.float32()) for b in BAND_NAMES]
    )
    return provenance_schema(schema) if provenance else schema
