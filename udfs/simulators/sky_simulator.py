"""A synthetic ZTF sky written in the real file formats, with its truth; deterministic for a seed.

The sky is a cap of objects (uniform, most of them constant stars, the rest of every variability
class of :mod:`udfs.simulators.lightcurve_simulator`, whose magnitude models and ZTF error relation
it reuses). A fraction of the objects sit in close pairs, 1.5 to 3 arcsec apart; no two objects are
closer than :data:`MIN_SEPARATION_ARCSEC`, so that association within that radius is exact.

Overlapping square fields, defined in the gnomonic plane tangent at the cap centre, cover the cap;
each is a grid of CCDs of 2 x 2 quadrants. Every field has its own ZTF-like schedule (seasons
behind the Sun, a visit every 1 to 3 nights, g/r alternation and pairs, some i), so an object in
an overlap is seen by several fields on different exposures. Each exposure has its own limiting
magnitude and zero point; a few have INFOBITS != 0.

Written under the output directory (see :class:`SkyLayout`):

- ``psfcat/``: one science PSF-fit catalog per exposure and quadrant (:mod:`catalogs.ztf_psfcat`);
  sources fainter than the exposure's limit are not written; about 0.5% have flags != 0.
- ``refpsfcat/``: one reference catalog per field, quadrant and filter, listing every object of
  the quadrant (positions scattered by 0.03 arcsec, mean magnitudes).
- ``dr_parquet/``: IRSA DR light-curve files, one per field, quadrant and filter
  (:data:`DR_PARQUET_SCHEMA`); hmjd is the heliocentric MJD of the psfcat OBSMJD at the
  object's reference position (:func:`catalogs.time_scales.heliocentric_mjd`).
- ``detections/``: the same detections in a generic long format, one file per field and quadrant
  (:data:`DETECTIONS_SCHEMA`).
- ``truth/``: objects, detections, DR objects, reference sources and exposures
  (:data:`TRUTH_OBJECTS_SCHEMA` and the others).

The work is cut into units, one per field and quadrant, run in a process pool. A unit evaluates
each of its objects' light curves at all the object's epochs (every field), from a generator
seeded by (seed, object id), and keeps those of its own field; its noise comes from a generator
seeded by (seed, field, quadrant). The output therefore does not depend on the number of workers,
and memory holds one unit's detections at a time.

Example
-------
>>> summary = simulate_sky(SkyConfig(n_objects=300, survey_days=60.0), "/tmp/sky")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.spatial import cKDTree

from catalogs.schema import CLASS_NAMES, Band, DetColumn, DRColumn, make_detid, rcid_of
from catalogs.time_scales import heliocentric_mjd, sun_unit_vector_and_distance
from catalogs.ztf_psfcat import (
    JD_MINUS_MJD_DAYS,
    PsfcatColumn,
    PsfcatHeader,
    psfcat_file_name,
    psfcat_quality,
    refpsfcat_file_name,
    write_psfcat,
)
from udfs.kernels.association import arcsec_of_chord, unit_vectors

# The labelled-light-curve simulator's class models and noise, so that the sky's variables are
# the classifier's training classes.
from udfs.simulators.lightcurve_simulator import (
    SURVEY_START_HMJD,
    draw_magerr,
    median_magerr,
    object_variability,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Fraction of detections given a random outlier, and its size range (mag).
_OUTLIER_FRACTION = 0.002
_OUTLIER_MAG = (0.3, 2.0)
#: No two objects are closer than this, arcsec.
MIN_SEPARATION_ARCSEC = 1.5
#: Range of the separation of the objects placed in pairs, arcsec.
PAIR_SEPARATION_ARCSEC = (MIN_SEPARATION_ARCSEC, 3.0)
#: Objects per square degree in the bundled DR5 quadrant (5,449 objects on 0.74 deg^2, g).
DEFAULT_DENSITY_PER_DEG2 = 7000.0
#: Largest cap radius, deg (the fields are squares in one tangent plane).
MAX_RADIUS_DEG = 30.0
#: Median 5-sigma limiting magnitude of an exposure per filter, and its scatter, mag.
LIMITING_MAG: dict[Band, float] = {Band.g: 20.8, Band.r: 20.6, Band.i: 20.0}
LIMITING_MAG_SCATTER = 0.25
#: Photometric zero point per filter (mag for 1 DN) and its exposure-to-exposure scatter, mag.
ZERO_POINT_MAG: dict[Band, float] = {Band.g: 26.3, Band.r: 26.2, Band.i: 25.8}
ZERO_POINT_SCATTER = 0.08
#: Mean colour coefficient of the photometric calibration per filter (DR ``clrcoeff``).
CLRCOEFF_MEAN: dict[Band, float] = {Band.g: -0.05, Band.r: 0.08, Band.i: -0.03}
#: ZTF pixel scale, arcsec per pixel.
PIXEL_SCALE_ARCSEC = 1.012
#: DR ``catflags`` of an epoch that fails :data:`catalogs.ztf_psfcat.PSFCAT_FLAGS_BAD_RULE`.
DR_CATFLAGS_BAD = 32768
#: Values given to the psfcat ``flags`` of a flagged detection, and to a bad exposure's INFOBITS.
_PSFCAT_FLAG_VALUES = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512], dtype=np.int16)
_INFOBITS_VALUES = np.array([1 << k for k in range(8)], dtype=np.int32)

#: Science PIDs are ``base + 100 * exposure_id + rcid`` (ZTF PIDs are about 10**12); reference
#: PIDs ``base + 1000 * fieldid + 10 * rcid + filterid``.
_SCIENCE_PID_BASE = 10**12
_REFERENCE_PID_BASE = 5 * 10**12

#: Reference g magnitudes: a power law, dN/dm ~ 10**(0.3 m), between these limits, mag.
_MEAN_MAG_RANGE = (13.0, 22.0)
_MAG_COUNT_SLOPE_DEX = 0.3
#: Relative frequency of the variable classes (the constant class takes the rest).
_VARIABLE_CLASS_WEIGHTS: dict[str, float] = {
    "rrab": 1.0,
    "rrc": 0.4,
    "cepheid": 0.1,
    "delta_scuti": 0.8,
    "ew": 2.0,
    "ea": 0.8,
    "mira": 0.2,
    "semiregular": 1.0,
    "rotational": 2.0,
    "agn": 1.5,
    "yso": 0.3,
    "cv": 0.15,
    "flare": 0.5,
    "bogus": 1.0,
}
assert set(_VARIABLE_CLASS_WEIGHTS) | {"constant"} == set(CLASS_NAMES)
#: The class models need a few epochs; an object with fewer is evaluated with extra epochs
#: after its last, which are then dropped.
_MIN_MODEL_EPOCHS = 4

# Streams of the random generators: default_rng([seed, stream, ...]).
_STREAM_OBJECTS, _STREAM_SCHEDULE, _STREAM_OBJECT, _STREAM_UNIT = 1, 2, 3, 4

_ARCSEC_PER_DEG = 3600.0
_DAYS_PER_YEAR = 365.25
_MINUTES_PER_DAY = 1440.0
_MIN_EXPOSURE_SPACING_DAYS = 1.0 / _MINUTES_PER_DAY
_MAGERR_PER_FLUX_ERR = 2.5 / math.log(10.0)  # magerr = 1.0857 sigflux / flux


class SkyLayout:
    """Directories and truth files under a simulated sky's output directory."""

    PSFCAT = "psfcat"
    REFPSFCAT = "refpsfcat"
    DR_PARQUET = "dr_parquet"
    DETECTIONS = "detections"
    TRUTH = "truth"
    TRUTH_OBJECTS = "truth/objects.parquet"
    TRUTH_DETECTIONS = "truth/detections.parquet"
    TRUTH_DR_OBJECTS = "truth/dr_objects.parquet"
    TRUTH_REFERENCE = "truth/reference.parquet"
    TRUTH_EXPOSURES = "truth/exposures.parquet"
    DIRECTORIES = (PSFCAT, REFPSFCAT, DR_PARQUET, DETECTIONS, TRUTH)


class TruthColumn:
    """Column names of the truth tables (besides DetColumn and DRColumn names)."""

    TRUTH_ID = "truth_id"  # int64, 0..n_objects-1
    CLASS_NAME = "class_name"
    PERIOD_DAYS = "period_days"
    AMPLITUDE_MAG = "amplitude_mag"
    COMPANION_ID = "companion_id"
    N_FIELDS = "n_fields"
    SOURCEID = "sourceid"
    MAG_MODEL = "mag_model"
    DETECTIONS_FILE = "detections_file"
    DETECTIONS_ROW = "detections_row"
    REFID = "refid"
    EXPOSURE_ID = "exposure_id"
    LIMITING_MAG = "limiting_mag"
    INFOBITS = "infobits"


def mean_mag_column(band: str) -> str:
    """Truth column of an object's mean magnitude in a band, e.g. ``mean_mag_g``."""
    return f"mean_mag_{band}"


def _dr_list(value_type: pa.DataType) -> pa.ListType:
    """A list type with IRSA's element name ("item")."""
    return pa.list_(pa.field("item", value_type))


#: IRSA DR light-curve layout, as IRSA writes it (hmjd float64).
DR_PARQUET_SCHEMA = pa.schema(
    [
        pa.field(DRColumn.OBJECTID, pa.int64()),
        pa.field(DRColumn.FILTERID, pa.uint8()),
        pa.field(DRColumn.FIELDID, pa.int16()),
        pa.field(DRColumn.RCID, pa.uint8()),
        pa.field(DRColumn.RA, pa.float32()),
        pa.field(DRColumn.DEC, pa.float32()),
        pa.field(DRColumn.NEPOCHS, pa.int64()),
        pa.field(DRColumn.HMJD, _dr_list(pa.float64())),
        pa.field(DRColumn.MAG, _dr_list(pa.float32())),
        pa.field(DRColumn.MAGERR, _dr_list(pa.float32())),
        pa.field(DRColumn.CLRCOEFF, _dr_list(pa.float32())),
        pa.field(DRColumn.CATFLAGS, _dr_list(pa.uint16())),
    ]
)

#: Generic long-format detections: one row per detection, band as a letter, flags 0 or 32768.
DETECTIONS_SCHEMA = pa.schema(
    [
        pa.field(DetColumn.RA, pa.float64()),
        pa.field(DetColumn.DEC, pa.float64()),
        pa.field(DetColumn.MJD, pa.float64()),
        pa.field(DetColumn.BAND, pa.string()),
        pa.field(DetColumn.MAG, pa.float32()),
        pa.field(DetColumn.MAGERR, pa.float32()),
        pa.field(DetColumn.FLAGS, pa.int32()),
    ]
)

TRUTH_OBJECTS_SCHEMA = pa.schema(
    [
        pa.field(TruthColumn.TRUTH_ID, pa.int64()),
        pa.field(DetColumn.RA, pa.float64()),  # deg, true position
        pa.field(DetColumn.DEC, pa.float64()),
        pa.field(TruthColumn.CLASS_NAME, pa.string()),
        pa.field(TruthColumn.PERIOD_DAYS, pa.float64()),  # null for aperiodic classes
        pa.field(TruthColumn.AMPLITUDE_MAG, pa.float64()),  # null for constant
        *(pa.field(mean_mag_column(b.name), pa.float64()) for b in Band),
        pa.field(TruthColumn.COMPANION_ID, pa.int64()),  # the other object of a pair, or null
        pa.field(TruthColumn.N_FIELDS, pa.int16()),  # fields whose footprint holds the object
    ]
)
TRUTH_DETECTIONS_SCHEMA = pa.schema(
    [
        pa.field(DetColumn.DETID, pa.int64()),
        pa.field(TruthColumn.TRUTH_ID, pa.int64()),
        pa.field(DetColumn.SOURCE_FILE, pa.string()),  # psfcat file name (in psfcat/)
        pa.field(TruthColumn.SOURCEID, pa.int32()),
        pa.field(TruthColumn.MAG_MODEL, pa.float32()),  # noiseless magnitude, mag
        pa.field(TruthColumn.DETECTIONS_FILE, pa.string()),  # the same detection in detections/
        pa.field(TruthColumn.DETECTIONS_ROW, pa.int64()),
    ]
)
TRUTH_DR_OBJECTS_SCHEMA = pa.schema(
    [
        pa.field(DRColumn.OBJECTID, pa.int64()),
        pa.field(TruthColumn.TRUTH_ID, pa.int64()),
        pa.field(DetColumn.SOURCE_FILE, pa.string()),  # DR file name (in dr_parquet/)
        pa.field(DetColumn.SOURCE_ROW, pa.int64()),
        pa.field(DRColumn.FIELDID, pa.int32()),
        pa.field(DRColumn.RCID, pa.int32()),
        pa.field(DRColumn.FILTERID, pa.int8()),
        pa.field(DRColumn.NEPOCHS, pa.int64()),
    ]
)
TRUTH_REFERENCE_SCHEMA = pa.schema(
    [
        pa.field(TruthColumn.REFID, pa.int64()),
        pa.field(TruthColumn.TRUTH_ID, pa.int64()),
        pa.field(DetColumn.SOURCE_FILE, pa.string()),  # refpsfcat file name (in refpsfcat/)
        pa.field(TruthColumn.SOURCEID, pa.int32()),
        pa.field(DRColumn.FIELDID, pa.int32()),
        pa.field(DRColumn.RCID, pa.int32()),
        pa.field(DRColumn.FILTERID, pa.int8()),
    ]
)
TRUTH_EXPOSURES_SCHEMA = pa.schema(
    [
        pa.field(TruthColumn.EXPOSURE_ID, pa.int64()),
        pa.field(DRColumn.FIELDID, pa.int32()),
        pa.field(DetColumn.MJD, pa.float64()),
        pa.field(DRColumn.FILTERID, pa.int8()),
        pa.field(TruthColumn.LIMITING_MAG, pa.float32()),
        pa.field(TruthColumn.INFOBITS, pa.int32()),
    ]
)


def dr_objectid(
    fieldid: npt.ArrayLike,
    filterid: npt.ArrayLike,
    ccdid: npt.ArrayLike,
    qid: npt.ArrayLike,
    index: npt.ArrayLike,
) -> IntArray:
    """ZTF DR object id: field, filter, CCD (2 digits), quadrant, then an 8-digit running index.

    15 digits for fields 100-999, as in the bundled DR5 sample (``250101100000001``: field 250,
    g, CCD 01, quadrant 1, object 1).
    """
    digits = ((fieldid, 12), (filterid, 11), (ccdid, 9), (qid, 8), (index, 0))
    return sum(np.asarray(value, dtype=np.int64) * 10**k for value, k in digits)


def dr_file_name(fieldid: int, filterid: int, ccdid: int, qid: int, release: int) -> str:
    """IRSA DR light-curve file name, e.g. ``ztf_000250_zg_c01_q1_dr5.parquet``."""
    return f"ztf_{fieldid:06d}_z{Band(filterid).name}_c{ccdid:02d}_q{qid}_dr{release}.parquet"


def detections_file_name(fieldid: int, ccdid: int, qid: int) -> str:
    """Long-format detections file of a field and quadrant."""
    return f"detections_{fieldid:06d}_c{ccdid:02d}_q{qid}.parquet"


def cap_radius_deg(n_objects: int, density_per_deg2: float) -> float:
    """Radius (deg) of the cap that holds ``n_objects`` at ``density_per_deg2``."""
    area_sr = n_objects / density_per_deg2 * math.radians(1.0) ** 2
    return math.degrees(math.acos(max(1.0 - area_sr / (2.0 * math.pi), -1.0)))


@dataclass(frozen=True)
class SkyConfig:
    """What sky to simulate.

    Attributes
    ----------
    n_objects : int
        Objects in the cap.
    seed : int
        Seed; the same configuration and seed give the same files, whatever the workers.
    ra_deg, dec_deg : float
        Centre of the cap, deg (the default is the bundled DR5 quadrant's).
    radius_deg : float or None
        Radius of the cap, deg; None sizes it for ``density_per_deg2``.
    density_per_deg2 : float
        Object density used when ``radius_deg`` is None, per deg^2.
    pair_fraction : float
        Fraction of the objects placed in pairs (separation uniform in 1.5-3 arcsec).
    variable_fraction : float
        Fraction of the objects that are not constant.
    field_side_deg : float or None
        Side of a field, deg; None lays out 2 x 2 fields that just cover the cap.
    field_overlap_fraction : float
        Overlap of neighbouring fields, as a fraction of the side.
    ccds_per_side : int
        A field is a grid of ccds_per_side**2 CCDs (at most 16), each of 2 x 2 quadrants.
    survey_start_mjd, survey_days : float
        First night (UTC MJD) and length (days) of the survey; the default is the span of the
        bundled DR5 sample.
    astrometric_sigma_arcsec : float
        Scatter of a detection's position about the truth, per coordinate, arcsec.
    reference_sigma_arcsec : float
        Scatter of a reference-catalog position, per coordinate, arcsec.
    flagged_fraction : float
        Fraction of the detections with psfcat flags != 0.
    bad_exposure_fraction : float
        Fraction of the exposures with INFOBITS != 0.
    first_fieldid : int
        ZTF field id of the first field; the others follow.
    dr_release : int
        Data release number in the DR file names.
    """

    n_objects: int = 5000
    seed: int = 1
    ra_deg: float = 41.7
    dec_deg: float = -26.6
    radius_deg: float | None = None
    density_per_deg2: float = DEFAULT_DENSITY_PER_DEG2
    pair_fraction: float = 0.05
    variable_fraction: float = 0.15
    field_side_deg: float | None = None
    field_overlap_fraction: float = 0.25
    ccds_per_side: int = 2
    survey_start_mjd: float = 58348.0
    survey_days: float = 886.0
    astrometric_sigma_arcsec: float = 0.1
    reference_sigma_arcsec: float = 0.03
    flagged_fraction: float = 0.005
    bad_exposure_fraction: float = 0.01
    first_fieldid: int = 250
    dr_release: int = 5

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"sky: {name} must be {rule}, got {getattr(self, name)!r}")

        need(self.n_objects >= 1, "n_objects", ">= 1")
        need(0.0 <= self.ra_deg < 360.0, "ra_deg", "in [0, 360)")
        need(-90.0 <= self.dec_deg <= 90.0, "dec_deg", "in [-90, 90]")
        need(
            self.radius_deg is None or 0.0 < self.radius_deg <= MAX_RADIUS_DEG,
            "radius_deg",
            f"in (0, {MAX_RADIUS_DEG}]",
        )
        need(self.density_per_deg2 > 0.0, "density_per_deg2", "> 0")
        need(0.0 <= self.pair_fraction <= 0.5, "pair_fraction", "in [0, 0.5]")
        need(0.0 <= self.variable_fraction <= 1.0, "variable_fraction", "in [0, 1]")
        need(self.field_side_deg is None or self.field_side_deg > 0.0, "field_side_deg", "> 0")
        need(0.0 <= self.field_overlap_fraction < 1.0, "field_overlap_fraction", "in [0, 1)")
        need(1 <= self.ccds_per_side <= 4, "ccds_per_side", "in [1, 4]")
        need(
            self.survey_start_mjd >= SURVEY_START_HMJD,
            "survey_start_mjd",
            f">= {SURVEY_START_HMJD} (the class models' epoch zero)",
        )
        need(self.survey_days > 0.0, "survey_days", "> 0")
        need(self.astrometric_sigma_arcsec >= 0.0, "astrometric_sigma_arcsec", ">= 0")
        need(self.reference_sigma_arcsec >= 0.0, "reference_sigma_arcsec", ">= 0")
        need(0.0 <= self.flagged_fraction <= 1.0, "flagged_fraction", "in [0, 1]")
        need(0.0 <= self.bad_exposure_fraction <= 1.0, "bad_exposure_fraction", "in [0, 1]")
        need(100 <= self.first_fieldid <= 9000, "first_fieldid", "in [100, 9000]")
        need(self.cap_radius_deg <= MAX_RADIUS_DEG, "n_objects", "small enough for the density")

    @property
    def cap_radius_deg(self) -> float:
        """Radius of the cap, deg."""
        if self.radius_deg is not None:
            return self.radius_deg
        return cap_radius_deg(self.n_objects, self.density_per_deg2)


@dataclass
class SkySummary:
    """What :func:`simulate_sky` wrote."""

    output: Path
    n_objects: int
    n_pairs: int
    radius_deg: float
    n_fields: int
    n_exposures: int
    n_units: int
    workers: int
    files: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    truth_rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def n_detections(self) -> int:
        """Detections written (rows of all psfcat files)."""
        return self.rows.get(SkyLayout.PSFCAT, 0)

    def format(self) -> str:
        """Human-readable summary."""
        rate = self.n_detections / self.seconds if self.seconds > 0 else float("nan")
        lines = [
            f"varsky simulate: {self.output}",
            f"  sky: {self.n_objects:,} objects ({self.n_pairs:,} pairs) in a cap of radius "
            f"{self.radius_deg:.3f} deg; {self.n_fields} fields, {self.n_exposures:,} exposures, "
            f"{self.n_units} field-quadrants",
        ]
        for name in SkyLayout.DIRECTORIES[:-1]:
            lines.append(
                f"  {name + '/':<12} {self.files.get(name, 0):>8,} files "
                f"{self.rows.get(name, 0):>12,} rows"
            )
        for name, n_rows in self.truth_rows.items():
            lines.append(f"  {name:<27} {n_rows:>12,} rows")
        lines.append(
            f"  time: {self.seconds:.1f} s with {self.workers} worker(s), {rate:,.0f} detections/s"
        )
        return "\n".join(lines)


# --- geometry ---
# On unit vectors in numpy, as in udfs/kernels/association.py: the close-pair search is a KD-tree on
# xyz, and simulation workers need no astropy (SkyCoord gives the same,
# bench/library_alternatives.py).


def _xyz_to_radec(xyz: FloatArray) -> tuple[FloatArray, FloatArray]:
    ra = np.degrees(np.arctan2(xyz[..., 1], xyz[..., 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(xyz[..., 2] / np.linalg.norm(xyz, axis=-1), -1.0, 1.0)))
    return ra, dec


def _local_east_north(xyz: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Unit vectors towards east and north at each point (any orientation at the poles)."""
    east = np.stack([-xyz[..., 1], xyz[..., 0], np.zeros(xyz.shape[:-1])], axis=-1)
    norm = np.linalg.norm(east, axis=-1, keepdims=True)
    east = np.where(norm > 1e-12, east / np.maximum(norm, 1e-300), [0.0, 1.0, 0.0])
    return east, np.cross(xyz, east)


def _offset(xyz: FloatArray, east_arcsec: FloatArray, north_arcsec: FloatArray) -> FloatArray:
    """Move points by small offsets towards east and north (arcsec, tangent-plane)."""
    east, north = _local_east_north(xyz)
    scale = math.radians(1.0 / _ARCSEC_PER_DEG)
    moved = xyz + scale * (east_arcsec[..., None] * east + north_arcsec[..., None] * north)
    return moved / np.linalg.norm(moved, axis=-1, keepdims=True)


@dataclass(frozen=True)
class _TangentPlane:
    """The gnomonic plane tangent at the cap centre; coordinates (xi, eta) in deg."""

    centre: FloatArray
    east: FloatArray
    north: FloatArray

    @classmethod
    def at(cls, ra_deg: float, dec_deg: float) -> _TangentPlane:
        centre = unit_vectors([ra_deg], [dec_deg])[0]
        ra = math.radians(ra_deg)
        east = np.array([-math.sin(ra), math.cos(ra), 0.0])
        return cls(centre, east, np.cross(centre, east))

    def project(self, xyz: FloatArray) -> tuple[FloatArray, FloatArray]:
        depth = xyz @ self.centre
        return np.degrees(xyz @ self.east / depth), np.degrees(xyz @ self.north / depth)

    def deproject(self, xi_deg: FloatArray, eta_deg: FloatArray) -> FloatArray:
        xyz = (
            self.centre
            + np.radians(xi_deg)[..., None] * self.east
            + np.radians(eta_deg)[..., None] * self.north
        )
        return xyz / np.linalg.norm(xyz, axis=-1, keepdims=True)


# --- the sky: objects, fields, schedule ---


@dataclass(frozen=True)
class _Objects:
    truth_id: IntArray  # (n,)
    xyz: FloatArray  # (n, 3)
    class_index: npt.NDArray[np.int16]
    mean_g_mag: FloatArray
    companion: IntArray  # truth id of the pair's other object, -1 if none


@dataclass(frozen=True)
class _Fields:
    fieldid: npt.NDArray[np.int32]  # (n_fields,)
    xi_deg: FloatArray  # tangent-plane centre
    eta_deg: FloatArray
    ra_deg: FloatArray
    dec_deg: FloatArray
    side_deg: float

    @property
    def n(self) -> int:
        return int(self.fieldid.size)


@dataclass(frozen=True)
class _Schedule:
    """Exposures in time order: all of the survey (exposure id = row), or those of some fields."""

    exposure_id: IntArray
    field_index: npt.NDArray[np.int32]
    mjd: FloatArray
    filterid: npt.NDArray[np.int8]
    limiting_mag: npt.NDArray[np.float32]
    zero_point_mag: npt.NDArray[np.float32]
    infobits: npt.NDArray[np.int32]

    @property
    def n(self) -> int:
        return int(self.mjd.size)

    def of_fields(self, field_indices: IntArray) -> _Schedule:
        """The exposures of some fields only."""
        return _take(self, np.isin(self.field_index, field_indices))


def _take(table: _Objects | _Schedule, rows: npt.ArrayLike) -> _Objects | _Schedule:
    """The same rows of every array of ``table``."""
    return type(table)(**{f.name: getattr(table, f.name)[rows] for f in dataclasses.fields(table)})


def _uniform_in_cap(
    rng: np.random.Generator, n: int, radius_deg: float, plane: _TangentPlane
) -> FloatArray:
    cos_theta = rng.uniform(math.cos(math.radians(radius_deg)), 1.0, n)
    phi = rng.uniform(0.0, 2.0 * math.pi, n)
    sin_theta = np.sqrt(1.0 - cos_theta**2)
    return (
        cos_theta[:, None] * plane.centre
        + (sin_theta * np.cos(phi))[:, None] * plane.east
        + (sin_theta * np.sin(phi))[:, None] * plane.north
    )


def _companions(rng: np.random.Generator, anchors: FloatArray) -> FloatArray:
    separation = rng.uniform(*PAIR_SEPARATION_ARCSEC, anchors.shape[0])
    angle = rng.uniform(0.0, 2.0 * math.pi, anchors.shape[0])
    return _offset(anchors, separation * np.sin(angle), separation * np.cos(angle))


def _draw_objects(config: SkyConfig, plane: _TangentPlane) -> _Objects:
    """Positions (pairs, minimum separation), classes and reference g magnitudes."""
    rng = np.random.default_rng([config.seed, _STREAM_OBJECTS])
    n = config.n_objects
    n_pairs = int(round(n * config.pair_fraction / 2.0))
    n_free = n - 2 * n_pairs  # rows: [free objects, anchors, companions]
    radius = config.cap_radius_deg
    xyz = np.empty((n, 3))
    xyz[: n_free + n_pairs] = _uniform_in_cap(rng, n_free + n_pairs, radius, plane)
    xyz[n_free + n_pairs :] = _companions(rng, xyz[n_free : n_free + n_pairs])
    min_chord = 2.0 * math.sin(math.radians(MIN_SEPARATION_ARCSEC / _ARCSEC_PER_DEG) / 2.0)
    for _ in range(100):
        close = cKDTree(xyz).query_pairs(min_chord * (1.0 + 1e-9), output_type="ndarray")
        if close.size:
            separation = arcsec_of_chord(
                np.linalg.norm(xyz[close[:, 0]] - xyz[close[:, 1]], axis=-1)
            )
            close = close[separation < MIN_SEPARATION_ARCSEC]
        if not close.size:
            break
        # Move the later object of each close pair: a free object or an anchor (with its
        # companion) anywhere in the cap, a companion around its anchor.
        redo = np.unique(close.max(axis=1))
        redo_anchor = redo[redo < n_free + n_pairs]
        xyz[redo_anchor] = _uniform_in_cap(rng, redo_anchor.size, radius, plane)
        anchors = redo_anchor[redo_anchor >= n_free]
        companions = np.unique(np.concatenate([anchors + n_pairs, redo[redo >= n_free + n_pairs]]))
        xyz[companions] = _companions(rng, xyz[companions - n_pairs])
    else:
        raise ValueError(
            f"sky: cannot place {n} objects at least {MIN_SEPARATION_ARCSEC} arcsec apart in a "
            f"cap of radius {radius} deg"
        )
    # Truth ids in random order, so that ids say nothing about pairs.
    truth_id = rng.permutation(n).astype(np.int64)
    companion = np.full(n, -1, dtype=np.int64)
    anchor_rows = np.arange(n_free, n_free + n_pairs)
    companion[anchor_rows] = truth_id[anchor_rows + n_pairs]
    companion[anchor_rows + n_pairs] = truth_id[anchor_rows]
    order = np.argsort(truth_id)
    variable, total = config.variable_fraction, sum(_VARIABLE_CLASS_WEIGHTS.values())
    share = {name: variable * weight / total for name, weight in _VARIABLE_CLASS_WEIGHTS.items()}
    weights = np.array([share.get(name, 1.0 - variable) for name in CLASS_NAMES])  # constant: rest
    class_index = rng.choice(len(CLASS_NAMES), n, p=weights / weights.sum()).astype(np.int16)
    slope = _MAG_COUNT_SLOPE_DEX * math.log(10.0)
    lo, hi = _MEAN_MAG_RANGE
    u = rng.random(n)
    mean_g = lo + np.log1p(u * np.expm1(slope * (hi - lo))) / slope
    return _Objects(truth_id[order], xyz[order], class_index, mean_g, companion[order])


def _layout_fields(config: SkyConfig, plane: _TangentPlane) -> _Fields:
    """Square fields on a grid in the tangent plane, overlapping, covering the cap."""
    margin_deg = 2.0 * PAIR_SEPARATION_ARCSEC[1] / _ARCSEC_PER_DEG
    half = math.degrees(math.tan(math.radians(config.cap_radius_deg))) + margin_deg
    overlap = config.field_overlap_fraction
    if config.field_side_deg is None:
        n_side = 2
        side = 2.0 * half / (2.0 - overlap)
    else:
        side = config.field_side_deg
        n_side = max(1, math.ceil((2.0 * half - side) / (side * (1.0 - overlap))) + 1)
    step = side * (1.0 - overlap)
    centres = (np.arange(n_side) - (n_side - 1) / 2.0) * step
    eta, xi = (a.ravel() for a in np.meshgrid(centres, centres, indexing="ij"))
    ra, dec = _xyz_to_radec(plane.deproject(xi, eta))
    fieldid = config.first_fieldid + np.arange(xi.size, dtype=np.int32)
    if fieldid[-1] > np.iinfo(np.int16).max:
        raise ValueError(f"sky: {xi.size} fields do not fit int16 field ids; use larger fields")
    return _Fields(fieldid, xi, eta, ra, dec, side)


def _field_schedule(
    rng: np.random.Generator, config: SkyConfig, ra_deg: float, dec_deg: float
) -> dict[str, np.ndarray]:
    """Exposures of one field: seasons, a visit every 1-3 nights, g/r alternation, some i."""
    nights = np.arange(
        math.floor(config.survey_start_mjd),
        math.floor(config.survey_start_mjd + config.survey_days),
    ).astype(np.float64)
    # Behind the Sun for 90 days, longer for southern fields (low in Palomar's sky).
    gap_days = np.clip(100.0 + 2.5 * max(0.0, -dec_deg), 90.0, 250.0) + rng.uniform(-10.0, 10.0)
    sun, _ = sun_unit_vector_and_distance(nights + 0.3)
    sun_ra_deg = np.degrees(np.arctan2(sun[:, 1], sun[:, 0]))
    from_sun_deg = np.abs((ra_deg - sun_ra_deg + 180.0) % 360.0 - 180.0)
    in_season = from_sun_deg > 0.5 * gap_days * 360.0 / _DAYS_PER_YEAR
    revisit_days = rng.uniform(1.0, 3.0)
    clear = rng.uniform(0.65, 0.9)
    observed = nights[in_season & (rng.random(nights.size) < clear / revisit_days)]
    n = observed.size
    first = observed + rng.uniform(0.15, 0.45, n)  # time of night
    # g/r alternation: the first band of a night alternates; the other often follows.
    first_band = ((np.arange(n) + rng.integers(0, 2)) % 2 + Band.g).astype(np.int8)
    times, bands = [first], [first_band]
    both = rng.random(n) < rng.uniform(0.3, 0.9)
    times.append(first[both] + rng.uniform(30.0, 60.0, both.sum()) / _MINUTES_PER_DAY)
    bands.append((Band.g + Band.r - first_band[both]).astype(np.int8))
    repeat = rng.random(n) < rng.uniform(0.0, 0.15)
    times.append(first[repeat] + rng.uniform(0.04, 0.15, repeat.sum()))
    bands.append(first_band[repeat])
    with_i = rng.random(n) < rng.uniform(0.04, 0.15)
    times.append(first[with_i] + rng.uniform(0.06, 0.1, with_i.sum()))
    bands.append(np.full(with_i.sum(), Band.i, dtype=np.int8))
    mjd, filterid = np.concatenate(times), np.concatenate(bands)
    order = np.argsort(mjd, kind="stable")
    mjd, filterid = mjd[order], filterid[order]
    # An exposure and its read-out take a minute: drop any exposure the schedule put sooner.
    spaced = np.diff(mjd, prepend=-np.inf) >= _MIN_EXPOSURE_SPACING_DAYS
    mjd, filterid = mjd[spaced], filterid[spaced]
    m = mjd.size
    limit = np.array([LIMITING_MAG[Band(b)] for b in (1, 2, 3)])[filterid - 1]
    limit = limit + np.clip(rng.normal(0.0, LIMITING_MAG_SCATTER, m), -1.0, 0.5)
    zero_point = np.array([ZERO_POINT_MAG[Band(b)] for b in (1, 2, 3)])[filterid - 1]
    zero_point = zero_point + rng.normal(0.0, ZERO_POINT_SCATTER, m)
    bad = rng.random(m) < config.bad_exposure_fraction
    infobits = np.where(bad, rng.choice(_INFOBITS_VALUES, m), 0).astype(np.int32)
    return {
        "mjd": mjd,
        "filterid": filterid,
        "limiting_mag": limit.astype(np.float32),
        "zero_point_mag": zero_point.astype(np.float32),
        "infobits": infobits,
    }


def _draw_schedule(config: SkyConfig, fields: _Fields) -> _Schedule:
    radec = zip(fields.ra_deg.tolist(), fields.dec_deg.tolist(), strict=True)
    parts = [
        _field_schedule(np.random.default_rng([config.seed, _STREAM_SCHEDULE, k]), config, ra, dec)
        for k, (ra, dec) in enumerate(radec)
    ]
    field_index = np.concatenate(
        [np.full(p["mjd"].size, k, dtype=np.int32) for k, p in enumerate(parts)]
    )
    cat = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    order = np.lexsort((field_index, cat["mjd"]))
    return _Schedule(
        exposure_id=np.arange(order.size, dtype=np.int64),
        field_index=field_index[order],
        **{k: v[order] for k, v in cat.items()},
    )


def _quadrant_of(
    config: SkyConfig, fields: _Fields, k: int, xi: FloatArray, eta: FloatArray
) -> tuple[npt.NDArray[np.bool_], IntArray, IntArray]:
    """Inside mask and quadrant grid cell (ix, iy) of points in field k."""
    n_cells = 2 * config.ccds_per_side
    u = (xi - fields.xi_deg[k]) / fields.side_deg + 0.5
    v = (eta - fields.eta_deg[k]) / fields.side_deg + 0.5
    inside = (u >= 0.0) & (u < 1.0) & (v >= 0.0) & (v < 1.0)
    ix = np.clip(np.floor(u * n_cells), 0, n_cells - 1).astype(np.int64)
    iy = np.clip(np.floor(v * n_cells), 0, n_cells - 1).astype(np.int64)
    return inside, ix, iy


# --- units of work: one field quadrant ---


@dataclass(frozen=True)
class _UnitTask:
    config: SkyConfig
    output: Path
    fields: _Fields
    schedule: _Schedule
    field_index: int
    ix: int  # quadrant grid cell in the field
    iy: int
    objects: _Objects  # the unit's objects, by truth id
    owned: npt.NDArray[np.bool_]  # this unit reports the object's truth row
    object_fields: list[IntArray]  # every field whose footprint holds the object

    @property
    def ccd_qid(self) -> tuple[int, int]:
        """CCD (1..) and quadrant (1..4) of the unit's quadrant grid cell."""
        ix, iy = self.ix, self.iy
        return (iy // 2) * self.config.ccds_per_side + ix // 2 + 1, 1 + ix % 2 + 2 * (iy % 2)


@dataclass(frozen=True)
class _UnitResult:
    truth: dict[str, pa.Table]
    counts: dict[str, tuple[int, int]]  # files and rows written, per directory


def _object_model(
    task: _UnitTask, k: int, t: FloatArray, band: IntArray
) -> tuple[FloatArray, FloatArray, float, float]:
    """Noiseless magnitudes of the unit's object k at its epochs; band levels, period, amplitude.

    Seeded by (seed, truth id) and evaluated on all the object's epochs, so every unit that holds
    the object gets the same light curve.
    """
    config, objects = task.config, task.objects
    mean_g_mag = float(objects.mean_g_mag[k])
    rng = np.random.default_rng([config.seed, _STREAM_OBJECT, int(objects.truth_id[k])])
    channel = (band - Band.g).astype(np.int8)
    n_pad = max(0, _MIN_MODEL_EPOCHS - t.size)
    if n_pad:
        last = t[-1] if t.size else config.survey_start_mjd
        t = np.concatenate([t, last + np.arange(1.0, n_pad + 1.0)])
        channel = np.concatenate([channel, np.zeros(n_pad, dtype=np.int8)])
    draw = object_variability(CLASS_NAMES[objects.class_index[k]], rng, t, channel)
    colour_gr = rng.uniform(*draw.colour_gr_mag)
    colour_ri = colour_gr * rng.uniform(0.3, 0.6)
    levels = np.array([mean_g_mag, mean_g_mag - colour_gr, mean_g_mag - colour_gr - colour_ri])
    model = levels[channel] + draw.delta_mag
    return model[: t.size - n_pad], levels, draw.period_days, draw.amplitude_mag


def _pixels(
    task: _UnitTask, plane: _TangentPlane, xyz: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Pixel position on the unit's quadrant image."""
    fields = task.fields
    quadrant_side = fields.side_deg / (2 * task.config.ccds_per_side)
    xi, eta = plane.project(xyz)
    x0 = fields.xi_deg[task.field_index] - fields.side_deg / 2 + task.ix * quadrant_side
    y0 = fields.eta_deg[task.field_index] - fields.side_deg / 2 + task.iy * quadrant_side
    scale = _ARCSEC_PER_DEG / PIXEL_SCALE_ARCSEC
    return (xi - x0) * scale, (eta - y0) * scale


def _simulate_unit(task: _UnitTask) -> _UnitResult:
    """Write everything of one field quadrant; return its truth rows and counts."""
    config, sched = task.config, task.schedule
    plane = _TangentPlane.at(config.ra_deg, config.dec_deg)
    f = task.field_index
    fieldid = int(task.fields.fieldid[f])
    ccdid, qid = task.ccd_qid
    rcid = rcid_of(ccdid, qid)
    rng = np.random.default_rng([config.seed, _STREAM_UNIT, fieldid, rcid])
    field_rows = {
        int(k): np.flatnonzero(sched.field_index == k) for k in np.unique(sched.field_index)
    }
    field_rows.setdefault(f, np.empty(0, dtype=np.int64))
    rows_f = field_rows[f]  # this field's exposures, in time order
    n_exp = rows_f.size
    exposure_pos = np.full(sched.n, -1, dtype=np.int64)
    exposure_pos[rows_f] = np.arange(n_exp)

    # Light curves: every object at every epoch of this field.
    truth_id, xyz = task.objects.truth_id, task.objects.xyz
    n_obj = truth_id.size
    levels = np.empty((n_obj, len(Band)))
    period, amplitude = np.empty(n_obj), np.empty(n_obj)
    pair_obj, pair_exp, pair_model = [], [], []
    for k in range(n_obj):
        object_fields = task.object_fields[k]
        if object_fields.size == 1:
            rows = field_rows[object_fields[0]]
        else:
            rows = np.sort(np.concatenate([field_rows[j] for j in object_fields]))
        model, levels[k], period[k], amplitude[k] = _object_model(
            task, k, sched.mjd[rows], sched.filterid[rows]
        )
        here = sched.field_index[rows] == f
        pair_obj.append(np.full(here.sum(), k, dtype=np.int64))
        pair_exp.append(exposure_pos[rows[here]])
        pair_model.append(model[here])
    obj, exp, model = (np.concatenate(p) for p in (pair_obj, pair_exp, pair_model))

    # Noise, detection, astrometry and flags of every (object, exposure).
    m = obj.size
    rows = rows_f[exp]
    magerr = draw_magerr(rng, model)
    mag = model + magerr * rng.standard_normal(m)
    outlier = rng.random(m) < _OUTLIER_FRACTION
    mag[outlier] += rng.uniform(*_OUTLIER_MAG, outlier.sum()) * rng.choice(
        (-1.0, 1.0), outlier.sum()
    )
    offsets_arcsec = rng.normal(0.0, config.astrometric_sigma_arcsec, (2, m))
    flagged = rng.random(m) < config.flagged_fraction
    flags = np.where(flagged, rng.choice(_PSFCAT_FLAG_VALUES, m), 0).astype(np.int16)
    chi = np.exp(rng.normal(0.0, 0.15, m)).astype(np.float32)
    sharp = rng.normal(0.0, 0.05, m).astype(np.float32)
    # Per exposure quadrant: zero point, its rms, colour coefficient.
    zero_point = sched.zero_point_mag[rows_f] + rng.normal(0.0, 0.02, n_exp)
    zero_point_rms = rng.uniform(0.01, 0.05, n_exp)
    band_f = sched.filterid[rows_f]
    clrcoeff = np.array([CLRCOEFF_MEAN[Band(b)] for b in (1, 2, 3)])[band_f - 1]
    clrcoeff = (clrcoeff + rng.normal(0.0, 0.02, n_exp)).astype(np.float32)

    detected = mag <= sched.limiting_mag[rows]
    det_xyz = _offset(xyz[obj[detected]], *offsets_arcsec[:, detected])
    xpos, ypos = _pixels(task, plane, det_xyz)
    order = np.lexsort((ypos, exp[detected]))
    det = np.flatnonzero(detected)[order]
    det_xyz, xpos, ypos = det_xyz[order], xpos[order], ypos[order]
    d_obj, d_exp, d_rows = obj[det], exp[det], rows[det]
    d_mag, d_magerr, d_flags = mag[det].astype(np.float32), magerr[det], flags[det]
    d_ra, d_dec = _xyz_to_radec(det_xyz)
    catflags = np.where(psfcat_quality(d_flags, sched.infobits[d_rows]), 0, DR_CATFLAGS_BAD)

    # psfcat: one file per exposure of the field, sources numbered from 1 in y order.
    starts = np.searchsorted(d_exp, np.arange(n_exp + 1))
    sourceid = (np.arange(d_exp.size) - starts[d_exp] + 1).astype(np.int32)
    pid = _SCIENCE_PID_BASE + 100 * sched.exposure_id[rows_f] + rcid
    flux = 10.0 ** (-0.4 * (d_mag - zero_point[d_exp]))
    sigflux = flux * d_magerr / _MAGERR_PER_FLUX_ERR
    columns = {
        PsfcatColumn.SOURCEID: sourceid,
        PsfcatColumn.XPOS: xpos,
        PsfcatColumn.YPOS: ypos,
        PsfcatColumn.RA: d_ra,
        PsfcatColumn.DEC: d_dec,
        PsfcatColumn.FLUX: flux,
        PsfcatColumn.SIGFLUX: sigflux,
        PsfcatColumn.MAG: d_mag,
        PsfcatColumn.SIGMAG: d_magerr,
        PsfcatColumn.SNR: flux / sigflux,
        PsfcatColumn.CHI: chi[det],
        PsfcatColumn.SHARP: sharp[det],
        PsfcatColumn.FLAGS: d_flags,
    }
    psfcat_names = []
    out = task.output
    for e in range(n_exp):
        row = rows_f[e]
        mjd = float(sched.mjd[row])
        filterid = int(sched.filterid[row])
        name = psfcat_file_name(mjd, fieldid, filterid, ccdid, qid)
        psfcat_names.append(name)
        s = slice(starts[e], starts[e + 1])
        write_psfcat(
            out / SkyLayout.PSFCAT / name,
            {column: values[s] for column, values in columns.items()},
            {
                PsfcatHeader.FIELDID: fieldid,
                PsfcatHeader.CCDID: ccdid,
                PsfcatHeader.QID: qid,
                PsfcatHeader.FILTERID: filterid,
                PsfcatHeader.OBSMJD: mjd,
                PsfcatHeader.OBSJD: mjd + JD_MINUS_MJD_DAYS,
                PsfcatHeader.MAGZP: float(zero_point[e]),
                PsfcatHeader.MAGZPRMS: float(zero_point_rms[e]),
                PsfcatHeader.INFOBITS: int(sched.infobits[row]),
                PsfcatHeader.PID: int(pid[e]),
            },
        )
    n_det = d_exp.size
    d_mjd = sched.mjd[d_rows]
    d_filterid = sched.filterid[d_rows]
    d_detid = make_detid(pid[d_exp], sourceid)
    det_name = detections_file_name(fieldid, ccdid, qid)
    # Table.from_arrays converts numpy columns to the schema's types (safely: no overflow).
    d_band = np.array(["g", "r", "i"])[d_filterid - 1]
    pq.write_table(
        pa.Table.from_arrays(
            [d_ra, d_dec, d_mjd, d_band, d_mag, d_magerr, catflags], schema=DETECTIONS_SCHEMA
        ),
        out / SkyLayout.DETECTIONS / det_name,
    )
    truth = {
        SkyLayout.TRUTH_DETECTIONS: pa.Table.from_arrays(
            [
                d_detid,
                truth_id[d_obj],
                pa.array(np.array(psfcat_names, dtype=object)[d_exp] if n_det else [], pa.string()),
                sourceid,
                model[det],
                pa.repeat(pa.scalar(det_name), n_det),
                np.arange(n_det),
            ],
            schema=TRUTH_DETECTIONS_SCHEMA,
        )
    }

    # Reference catalogs (every object) and DR light curves, per filter the field observes.
    ref_parts, dr_parts = [], []
    for filterid in np.unique(band_f):
        filterid = int(filterid)
        ref_pid = _REFERENCE_PID_BASE + 1000 * fieldid + 10 * rcid + filterid
        n_frames = int(rng.integers(15, 41))
        ref_xyz = _offset(xyz, *rng.normal(0.0, config.reference_sigma_arcsec, (2, n_obj)))
        ref_x, ref_y = _pixels(task, plane, ref_xyz)
        o = np.lexsort((ref_x, ref_y))  # the catalog's rows: sources in y order
        ref_sourceid = np.empty(n_obj, dtype=np.int32)
        ref_sourceid[o] = np.arange(1, n_obj + 1)
        ref_ra, ref_dec = _xyz_to_radec(ref_xyz)
        level = levels[:, filterid - Band.g]
        ref_err = np.maximum(median_magerr(level) / math.sqrt(n_frames), 0.003)
        ref_mag = (level + ref_err * rng.standard_normal(n_obj)).astype(np.float32)
        ref_zp = ZERO_POINT_MAG[Band(filterid)]
        ref_flux = 10.0 ** (-0.4 * (ref_mag - ref_zp))
        ref_sigflux = ref_flux * ref_err / _MAGERR_PER_FLUX_ERR
        ref_name = refpsfcat_file_name(fieldid, filterid, ccdid, qid)
        write_psfcat(
            out / SkyLayout.REFPSFCAT / ref_name,
            {
                PsfcatColumn.SOURCEID: ref_sourceid[o],
                PsfcatColumn.XPOS: ref_x[o],
                PsfcatColumn.YPOS: ref_y[o],
                PsfcatColumn.RA: ref_ra[o],
                PsfcatColumn.DEC: ref_dec[o],
                PsfcatColumn.FLUX: ref_flux[o],
                PsfcatColumn.SIGFLUX: ref_sigflux[o],
                PsfcatColumn.MAG: ref_mag[o],
                PsfcatColumn.SIGMAG: ref_err[o],
                PsfcatColumn.SNR: (ref_flux / ref_sigflux)[o],
                PsfcatColumn.CHI: np.ones(n_obj, dtype=np.float32),
                PsfcatColumn.SHARP: np.zeros(n_obj, dtype=np.float32),
                PsfcatColumn.FLAGS: np.zeros(n_obj, dtype=np.int16),
                PsfcatColumn.NEPOCHS: np.full(n_obj, n_frames, dtype=np.int16),
            },
            {
                PsfcatHeader.FIELDID: fieldid,
                PsfcatHeader.CCDID: ccdid,
                PsfcatHeader.QID: qid,
                PsfcatHeader.FILTERID: filterid,
                PsfcatHeader.MAGZP: ref_zp,
                PsfcatHeader.MAGZPRMS: 0.01,
                PsfcatHeader.PID: ref_pid,
            },
        )
        ref_parts.append(
            pa.Table.from_arrays(
                [
                    make_detid(ref_pid, ref_sourceid[o]),
                    truth_id[o],
                    pa.repeat(pa.scalar(ref_name), n_obj),
                    ref_sourceid[o],
                    *(np.full(n_obj, v) for v in (fieldid, rcid, filterid)),
                ],
                schema=TRUTH_REFERENCE_SCHEMA,
            )
        )

        # DR light curves: objects detected in this filter, by objectid, epochs in time order.
        in_band = np.flatnonzero(d_filterid == filterid)
        if not in_band.size:
            continue
        in_band = in_band[np.lexsort((d_mjd[in_band], ref_sourceid[d_obj[in_band]]))]
        objects, first, counts = np.unique(
            ref_sourceid[d_obj[in_band]], return_index=True, return_counts=True
        )
        k_obj = d_obj[in_band[first]]
        list_offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))

        def lists(values: np.ndarray, offsets: pa.Array = list_offsets) -> pa.ListArray:
            array = pa.array(values)
            return pa.ListArray.from_arrays(offsets, array, type=_dr_list(array.type))

        objectid = dr_objectid(fieldid, filterid, ccdid, qid, objects)
        n_rows = objects.size
        dr_name = dr_file_name(fieldid, filterid, ccdid, qid, config.dr_release)
        pq.write_table(
            pa.Table.from_arrays(
                [
                    objectid,
                    *(np.full(n_rows, v) for v in (filterid, fieldid, rcid)),
                    ref_ra[k_obj],
                    ref_dec[k_obj],
                    counts,
                    lists(
                        heliocentric_mjd(
                            d_mjd[in_band], ref_ra[d_obj[in_band]], ref_dec[d_obj[in_band]]
                        )
                    ),
                    lists(d_mag[in_band]),
                    lists(d_magerr[in_band].astype(np.float32)),
                    lists(clrcoeff[d_exp[in_band]]),
                    lists(catflags[in_band].astype(np.uint16)),
                ],
                schema=DR_PARQUET_SCHEMA,
            ),
            out / SkyLayout.DR_PARQUET / dr_name,
        )
        dr_parts.append(
            pa.Table.from_arrays(
                [
                    objectid,
                    truth_id[k_obj],
                    pa.repeat(pa.scalar(dr_name), n_rows),
                    np.arange(n_rows),
                    *(np.full(n_rows, v) for v in (fieldid, rcid, filterid)),
                    counts,
                ],
                schema=TRUTH_DR_OBJECTS_SCHEMA,
            )
        )
    truth[SkyLayout.TRUTH_REFERENCE] = (
        pa.concat_tables(ref_parts) if ref_parts else TRUTH_REFERENCE_SCHEMA.empty_table()
    )
    truth[SkyLayout.TRUTH_DR_OBJECTS] = (
        pa.concat_tables(dr_parts) if dr_parts else TRUTH_DR_OBJECTS_SCHEMA.empty_table()
    )
    owned = np.flatnonzero(task.owned)
    truth[SkyLayout.TRUTH_OBJECTS] = pa.table(
        {
            TruthColumn.TRUTH_ID: truth_id[owned],
            TruthColumn.PERIOD_DAYS: period[owned],
            TruthColumn.AMPLITUDE_MAG: amplitude[owned],
            **{mean_mag_column(b.name): levels[owned, b - Band.g] for b in Band},
        }
    )
    counts = {
        SkyLayout.PSFCAT: (n_exp, n_det),
        SkyLayout.REFPSFCAT: (len(ref_parts), truth[SkyLayout.TRUTH_REFERENCE].num_rows),
        SkyLayout.DR_PARQUET: (len(dr_parts), truth[SkyLayout.TRUTH_DR_OBJECTS].num_rows),
        SkyLayout.DETECTIONS: (1, n_det),
    }
    return _UnitResult(truth, counts)


# --- the whole sky ---


@dataclass(frozen=True)
class _Plan:
    objects: _Objects
    fields: _Fields
    schedule: _Schedule
    n_fields_of_object: npt.NDArray[np.int16]
    tasks: list[_UnitTask]


def _plan(config: SkyConfig, output: Path) -> _Plan:
    """Draw the sky and cut it into units, one per field quadrant holding objects."""
    plane = _TangentPlane.at(config.ra_deg, config.dec_deg)
    objects = _draw_objects(config, plane)
    fields = _layout_fields(config, plane)
    schedule = _draw_schedule(config, fields)
    xi, eta = plane.project(objects.xyz)
    members = []  # (object row, field, ix, iy)
    for k in range(fields.n):
        inside, ix, iy = _quadrant_of(config, fields, k, xi, eta)
        rows = np.flatnonzero(inside)
        members.append(np.stack([rows, np.full(rows.size, k), ix[rows], iy[rows]], axis=1))
    member = np.concatenate(members)
    member = member[np.lexsort((member[:, 1], member[:, 0]))]  # by object, then field
    n_fields_of_object = np.bincount(member[:, 0], minlength=config.n_objects)
    if (n_fields_of_object == 0).any():
        raise AssertionError("sky: an object lies outside every field")
    starts = np.concatenate([[0], np.cumsum(n_fields_of_object)])
    object_fields = [member[starts[i] : starts[i + 1], 1] for i in range(config.n_objects)]
    owner = np.zeros(member.shape[0], dtype=bool)
    owner[starts[:-1]] = True  # an object's first field reports its truth row
    unit_order = np.lexsort((member[:, 0], member[:, 2], member[:, 3], member[:, 1]))
    member, owner = member[unit_order], owner[unit_order]
    # Each unit gets the exposures of every field its objects lie in.
    member_fields = [object_fields[r] for r in member[:, 0]]
    keys = member[:, 1:]
    breaks = np.flatnonzero((keys[1:] != keys[:-1]).any(axis=1)) + 1
    tasks = []
    for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, member.shape[0]], strict=True):
        rows = member[lo:hi, 0]
        k, ix, iy = (int(v) for v in member[lo, 1:])
        tasks.append(
            _UnitTask(
                config=config,
                output=output,
                fields=fields,
                schedule=schedule.of_fields(np.unique(np.concatenate(member_fields[lo:hi]))),
                field_index=k,
                ix=ix,
                iy=iy,
                objects=_take(objects, rows),
                owned=owner[lo:hi],
                object_fields=[object_fields[r] for r in rows],
            )
        )
    # Units in field order, then by rcid.
    tasks.sort(key=lambda t: (t.field_index, rcid_of(*t.ccd_qid)))
    return _Plan(objects, fields, schedule, n_fields_of_object.astype(np.int16), tasks)


def _objects_table(plan: _Plan, owned: pa.Table) -> pa.Table:
    objects = plan.objects
    owned = owned.sort_by(TruthColumn.TRUTH_ID)
    if not np.array_equal(owned[TruthColumn.TRUTH_ID].to_numpy(), objects.truth_id):
        raise AssertionError("sky: every object must be reported by exactly one unit")
    ra, dec = _xyz_to_radec(objects.xyz)
    companion = objects.companion
    return pa.Table.from_arrays(
        [
            objects.truth_id,
            ra,
            dec,
            pa.array(np.array(CLASS_NAMES, dtype=object)[objects.class_index], pa.string()),
            pa.array(owned[TruthColumn.PERIOD_DAYS].to_numpy(), from_pandas=True),
            pa.array(owned[TruthColumn.AMPLITUDE_MAG].to_numpy(), from_pandas=True),
            *(owned[mean_mag_column(b.name)] for b in Band),
            pa.array(companion, mask=companion < 0),
            plan.n_fields_of_object,
        ],
        schema=TRUTH_OBJECTS_SCHEMA,
    )


def _exposures_table(plan: _Plan) -> pa.Table:
    sched = plan.schedule
    return pa.Table.from_arrays(
        [
            np.arange(sched.n),
            plan.fields.fieldid[sched.field_index],
            sched.mjd,
            sched.filterid,
            sched.limiting_mag,
            sched.infobits,
        ],
        schema=TRUTH_EXPOSURES_SCHEMA,
    )


def _process_context() -> multiprocessing.context.BaseContext:
    """Fork where the platform can (workers start at once, from any main module), else spawn.

    The workers only compute with numpy and write files; they touch no thread or connection
    they inherit.
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def simulate_sky(
    config: SkyConfig,
    output: str | Path,
    workers: int = 2,
    log: Callable[[str], None] | None = None,
) -> SkySummary:
    """Simulate a sky and write it, in every format, with its truth, under ``output``.

    Parameters
    ----------
    config : SkyConfig
        The sky.
    output : str or Path
        Output directory; created if needed, and must not hold the sky's subdirectories yet.
    workers : int
        Processes writing field quadrants in parallel (1: in this process). The files do not
        depend on it.
    log : callable, optional
        Receives progress lines.

    Returns
    -------
    SkySummary
        Counts of objects, exposures, files and rows, and the time taken.
    """
    start = time.perf_counter()
    if workers < 1:
        raise ValueError(f"simulate: workers must be >= 1, got {workers}")
    output = Path(output)
    for name in SkyLayout.DIRECTORIES:
        if (output / name).exists():
            raise FileExistsError(f"simulate: {output / name} exists; choose an empty output")
    for name in SkyLayout.DIRECTORIES:
        (output / name).mkdir(parents=True)
    plan = _plan(config, output)
    summary = SkySummary(
        output=output,
        n_objects=config.n_objects,
        n_pairs=int((plan.objects.companion >= 0).sum() // 2),
        radius_deg=config.cap_radius_deg,
        n_fields=plan.fields.n,
        n_exposures=plan.schedule.n,
        n_units=len(plan.tasks),
        workers=workers,
    )
    if log:
        log(
            f"varsky simulate: {config.n_objects:,} objects, {plan.fields.n} fields, "
            f"{plan.schedule.n:,} exposures, {len(plan.tasks)} field-quadrants, "
            f"{workers} worker(s)"
        )
    exposures = _exposures_table(plan)
    pq.write_table(exposures, output / SkyLayout.TRUTH_EXPOSURES)
    streamed = {
        SkyLayout.TRUTH_DETECTIONS: TRUTH_DETECTIONS_SCHEMA,
        SkyLayout.TRUTH_DR_OBJECTS: TRUTH_DR_OBJECTS_SCHEMA,
        SkyLayout.TRUTH_REFERENCE: TRUTH_REFERENCE_SCHEMA,
    }
    writers = {name: pq.ParquetWriter(output / name, schema) for name, schema in streamed.items()}
    truth_rows = dict.fromkeys(streamed, 0)
    owned = []
    executor = None
    try:
        if workers == 1:
            results = map(_simulate_unit, plan.tasks)
        else:
            executor = ProcessPoolExecutor(max_workers=workers, mp_context=_process_context())
            results = executor.map(_simulate_unit, plan.tasks)
        step = max(1, len(plan.tasks) // 10)
        for i, result in enumerate(results, start=1):
            for name, writer in writers.items():
                writer.write_table(result.truth[name])
                truth_rows[name] += result.truth[name].num_rows
            owned.append(result.truth[SkyLayout.TRUTH_OBJECTS])
            for name, (n_files, n_rows) in result.counts.items():
                summary.files[name] = summary.files.get(name, 0) + n_files
                summary.rows[name] = summary.rows.get(name, 0) + n_rows
            if log and (i % step == 0 or i == len(plan.tasks)):
                log(
                    f"  {i}/{len(plan.tasks)} field-quadrants, "
                    f"{summary.n_detections:,} detections, {time.perf_counter() - start:.1f} s"
                )
    finally:
        for writer in writers.values():
            writer.close()
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    objects = _objects_table(plan, pa.concat_tables(owned))
    pq.write_table(objects, output / SkyLayout.TRUTH_OBJECTS)
    summary.truth_rows = {
        SkyLayout.TRUTH_OBJECTS: objects.num_rows,
        **truth_rows,
        SkyLayout.TRUTH_EXPOSURES: exposures.num_rows,
    }
    summary.files[SkyLayout.TRUTH] = len(summary.truth_rows)
    summary.seconds = time.perf_counter() - start
    return summary
