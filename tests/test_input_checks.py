"""Bad input paths, files and models fail early with a message naming what is wrong."""

from __future__ import annotations

import shutil

import pytest

from catalogs.dr_lightcurves import check_dr_files
from catalogs.errors import InputError
from catalogs.input_files import expand_files
from udfs.model.classifier import checked_model


def test_the_same_file_given_twice_is_refused(sample_file, tmp_path):
    link = tmp_path / "again.parquet"
    link.symlink_to(sample_file)
    with pytest.raises(InputError, match="given twice"):
        expand_files([sample_file, sample_file])
    with pytest.raises(InputError, match="given twice"):
        expand_files([sample_file.parent, link])  # a folder and a link to a file in it


def test_truncated_parquet_is_named(sample_file, tmp_path):
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(sample_file.read_bytes()[: sample_file.stat().st_size // 2])
    with pytest.raises(InputError, match=r"truncated.parquet: cannot read as Parquet"):
        check_dr_files([str(truncated)])


def test_missing_model_file_is_named(model_dir, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    (broken / "model.keras").unlink()
    with pytest.raises(FileNotFoundError, match="model.keras is missing"):
        checked_model(broken)


def test_tampered_model_file_is_refused(model_dir, tmp_path):
    tampered = tmp_path / "model"
    shutil.copytree(model_dir, tampered)
    with (tampered / "model.keras").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="its card says .*changed or belongs to another card"):
        checked_model(tampered)
    path, card, sha256 = checked_model(model_dir)
    assert sha256 == card.model_sha256
