"""How a survey's bands map onto varsky's image channels g, r and i.

The network has one channel per ZTF band. Light curves of other surveys (CRTS's clear band
calibrated to V, Rubin's u g r i z y) come in through a band map: each survey band name goes to a
channel (``g``, ``r``, ``i``) or is dropped (``drop``: its epochs go to the rejects table with the
reason ``band_dropped``, never silently). A band that the map does not name is an error, so a
table of an unknown survey cannot be half-read by accident.

A map is written on the command line as ``--band-map V=g,u=g,z=i``, or names a built-in profile
(``--band-map rubin``), or a TOML or JSON profile file (``--band-map my_survey.toml``)::

    name = "rubin"
    [bands]
    u = "drop"
    g = "g"
    r = "r"
    i = "i"
    z = "i"
    y = "drop"

The bands g, r and i map to themselves unless the map says otherwise. The map in effect is
written into the output's provenance (``BandMap.to_json``).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from catalogs.errors import InputError
from catalogs.schema import BAND_NAMES

#: Target of a band whose epochs are not used.
DROP = "drop"
#: Channel code of a dropped epoch in :meth:`BandMap.channels`.
DROPPED_CHANNEL = -2
#: The option users pass, named in error messages.
OPTION = "--band-map"

#: Built-in survey profiles. CRTS: the unfiltered CSS band is calibrated to V, closest to g.
#: Rubin: u and y are far from any channel (merging them would mix colour into dm); z is
#: close to i.
BUILTIN_PROFILES: dict[str, dict[str, str]] = {
    "ztf": {"g": "g", "r": "r", "i": "i", "ZTF_g": "g", "ZTF_r": "r", "ZTF_i": "i"},
    "crts": {"V": "g", "clear": "g", "CV": "g"},
    "rubin": {"u": DROP, "g": "g", "r": "r", "i": "i", "z": "i", "y": DROP},
}


def _check_targets(mapping: Mapping[str, str], source: str) -> dict[str, str]:
    allowed = (*BAND_NAMES, DROP)
    out: dict[str, str] = {}
    for band, target in mapping.items():
        band, target = str(band).strip(), str(target).strip()
        if not band:
            raise ValueError(f"{OPTION} {source}: empty band name")
        if target not in allowed:
            raise ValueError(
                f"{OPTION} {source}: band {band!r} maps to {target!r}; targets are "
                f"{', '.join(allowed)}"
            )
        out[band] = target
    return out


@dataclass(frozen=True)
class BandMap:
    """Survey band name -> varsky band (``g``, ``r``, ``i``) or :data:`DROP`."""

    #: The explicit entries; g, r and i map to themselves unless listed.
    bands: dict[str, str] = field(default_factory=dict)
    #: Profile name or the command-line text it came from (for provenance).
    name: str = "default"

    @classmethod
    def parse(cls, spec: str | None) -> BandMap:
        """A map from ``--band-map``: ``NAME=BAND,...``, a built-in profile or a profile file."""
        if spec is None or not spec.strip():
            return cls()
        spec = spec.strip()
        if spec in BUILTIN_PROFILES:
            return cls(dict(BUILTIN_PROFILES[spec]), spec)
        path = Path(spec)
        if path.suffix.lower() in (".toml", ".json"):
            return cls.from_file(path)
        if "=" not in spec:
            raise ValueError(
                f"{OPTION} {spec!r}: expected NAME=BAND pairs (e.g. V=g,u=g,z=i), a profile "
                f"({', '.join(BUILTIN_PROFILES)}) or a .toml/.json profile file"
            )
        pairs = {}
        for item in spec.split(","):
            if not item.strip():
                continue
            band, sep, target = item.partition("=")
            if not sep:
                raise ValueError(f"{OPTION} {spec!r}: {item!r} is not NAME=BAND")
            pairs[band] = target
        return cls(_check_targets(pairs, repr(spec)), spec)

    @classmethod
    def from_file(cls, path: str | Path) -> BandMap:
        """A profile file: TOML or JSON with ``name`` and a ``bands`` table."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{OPTION} {path}: no such profile file")
        try:
            text = path.read_text()
            data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{OPTION} {path}: cannot parse profile ({err})") from err
        bands = data.get("bands")
        if not isinstance(bands, Mapping) or not bands:
            raise ValueError(f"{OPTION} {path}: needs a non-empty 'bands' table")
        return cls(_check_targets(bands, str(path)), str(data.get("name", path.stem)))

    @property
    def full(self) -> dict[str, str]:
        """Every mapped band, g, r and i included."""
        return {**{b: b for b in BAND_NAMES}, **self.bands}

    def to_json(self) -> str:
        """The map in effect, for provenance."""
        return json.dumps({"name": self.name, "bands": self.full}, sort_keys=True)

    def channels(
        self, names: npt.ArrayLike, path: str = "<table>", column: str = "band"
    ) -> npt.NDArray[np.int8]:
        """Channel (0 g, 1 r, 2 i) of each band name; :data:`DROPPED_CHANNEL` where dropped.

        Raises
        ------
        InputError
            Naming the file, column, first row and band that the map does not name.
        """
        names = np.asarray(names, dtype=object)
        uniques, inverse = np.unique(names.astype(str), return_inverse=True)
        full = self.full
        codes = np.empty(uniques.size, dtype=np.int8)
        for k, band in enumerate(uniques.tolist()):
            target = full.get(band)
            if target is None:
                row = int(np.flatnonzero(inverse == k)[0])
                raise InputError(
                    path,
                    f"band {band!r} is not one of varsky's channels {list(BAND_NAMES)}; map it "
                    f"with {OPTION} (e.g. {OPTION} {band}=g, or {band}={DROP}, or a survey "
                    f"profile: {', '.join(BUILTIN_PROFILES)})",
                    column=column,
                    row=row,
                )
            codes[k] = DROPPED_CHANNEL if target == DROP else BAND_NAMES.index(target)
        return codes[inverse].reshape(names.shape)
