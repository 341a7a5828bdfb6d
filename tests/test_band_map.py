"""Band maps: how other surveys' bands reach varsky's g, r, i channels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from catalogs.band_map import DROP, DROPPED_CHANNEL, BandMap
from catalogs.errors import InputError


def test_pairs_and_identity():
    m = BandMap.parse("V=g, u=g,z=i,y=drop")
    assert m.full["V"] == "g" and m.full["z"] == "i" and m.full["y"] == DROP
    assert m.full["r"] == "r"  # g, r, i map to themselves
    codes = m.channels(np.array(["V", "r", "z", "y", "g", "i"]))
    assert codes.tolist() == [0, 1, 2, DROPPED_CHANNEL, 0, 2]
    assert codes.dtype == np.int8


def test_builtin_profiles():
    rubin = BandMap.parse("rubin")
    assert rubin.channels(np.array(list("ugrizy"))).tolist() == [
        DROPPED_CHANNEL, 0, 1, 2, 2, DROPPED_CHANNEL,
    ]  # fmt: skip
    assert BandMap.parse("crts").channels(np.array(["V"])).tolist() == [0]
    assert BandMap.parse(None).full == {"g": "g", "r": "r", "i": "i"}


def test_profile_files(tmp_path):
    toml = tmp_path / "survey.toml"
    toml.write_text('name = "mysurvey"\n[bands]\nB = "g"\nR = "r"\nI = "i"\n')
    m = BandMap.parse(str(toml))
    assert m.name == "mysurvey" and m.channels(np.array(["B", "R", "I"])).tolist() == [0, 1, 2]
    js = tmp_path / "survey.json"
    js.write_text(json.dumps({"bands": {"V": "g"}}))
    m = BandMap.parse(str(js))
    assert m.name == "survey" and json.loads(m.to_json())["bands"]["V"] == "g"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("V=x", "band 'V' maps to 'x'"),
        ("V", "expected NAME=BAND pairs"),
        ("V=g,u", "'u' is not NAME=BAND"),
        ("missing.toml", "no such profile file"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        BandMap.parse(spec)


def test_bad_profile_file(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("bands = 3\n")
    with pytest.raises(ValueError, match="needs a non-empty 'bands' table"):
        BandMap.parse(str(path))


def test_unmapped_band_names_file_row_band_and_option():
    with pytest.raises(InputError) as err:
        BandMap().channels(np.array(["g", "g", "V", "r"]), "lc.parquet")
    text = str(err.value)
    assert "lc.parquet, column 'band', row 2" in text
    assert "band 'V'" in text and "--band-map V=g" in text
    assert err.value.row == 2 and err.value.column == "band"
