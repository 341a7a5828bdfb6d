import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from catalogs.dr_lightcurves import check_dr_file, check_dr_files
from catalogs.errors import InputError
from catalogs.input_files import (
    FITS_SUFFIXES,
    expand_files,
    input_catalog_name,
    light_curve_inputs,
)
from catalogs.schema import InputKind


def test_sample_passes_and_reports_float32_times(sample_file):
    info = check_dr_file(str(sample_file))
    assert info.num_rows == 5449
    assert info.hmjd_type == "float"


def test_directory_expands_to_its_parquet_files(sample_file, tmp_path):
    (tmp_path / "a.parquet").write_bytes(sample_file.read_bytes())
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "notes.txt").write_text("x")
    assert expand_files([str(tmp_path)]) == [str(tmp_path / "a.parquet")]
    (tmp_path / "b.fits.gz").write_bytes(b"x")
    assert expand_files([tmp_path], FITS_SUFFIXES) == [str(tmp_path / "b.fits.gz")]
    (tmp_path / "sub").mkdir()
    with pytest.raises(InputError, match=r"sub: directory holds no \.fits/\.fits\.gz/\.fits\.fz"):
        expand_files([tmp_path / "sub"], FITS_SUFFIXES)


def test_missing_path_is_named(tmp_path):
    missing = tmp_path / "nope.parquet"
    with pytest.raises(InputError, match=r"nope\.parquet: input path does not exist"):
        check_dr_files([str(missing)])


def test_directory_without_parquet(tmp_path):
    with pytest.raises(InputError, match="holds no Parquet file"):
        check_dr_files([str(tmp_path)])


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.parquet: file is empty \(0 bytes\)"):
        check_dr_file(str(empty))


def test_not_parquet(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_text("objectid,mag\n1,2\n")
    with pytest.raises(InputError, match=r"bad\.parquet: cannot read as Parquet"):
        check_dr_file(str(bad))


def test_missing_column_is_named(sample_file, tmp_path):
    table = pq.read_table(sample_file).drop_columns(["magerr"])
    path = tmp_path / "no_magerr.parquet"
    pq.write_table(table, path)
    with pytest.raises(InputError, match=r"no_magerr\.parquet, column 'magerr': required column"):
        check_dr_file(str(path))


def test_wrong_type_is_named(sample_file, tmp_path):
    table = pq.read_table(sample_file)
    i = table.schema.get_field_index("hmjd")
    table = table.set_column(i, "hmjd", pa.array(["x"] * table.num_rows))
    path = tmp_path / "str_hmjd.parquet"
    pq.write_table(table, path)
    with pytest.raises(InputError, match=r"column 'hmjd': must be list<float>, found string"):
        check_dr_file(str(path))


def test_float64_times_accepted(sample_file, tmp_path):
    table = pq.read_table(sample_file)
    i = table.schema.get_field_index("hmjd")
    table = table.set_column(i, "hmjd", pc.cast(table["hmjd"], pa.list_(pa.float64())))
    path = tmp_path / "f64.parquet"
    pq.write_table(table, path)
    assert check_dr_file(str(path)).hmjd_type == "double"


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ("obs_collection=ztf_dr19_lc\ndataproduct_type=object\n", "ztf_dr19_lc"),  # HATS 1.0
        ("catalog_name=old_style\n", "old_style"),  # before HATS 1.0
        ("dataproduct_type=object\n", "my_catalog"),  # no name: the folder's
    ],
)
def test_input_catalog_name_of_a_hats_catalog(tmp_path, properties, expected):
    catalog = tmp_path / "my_catalog"
    (catalog / "dataset").mkdir(parents=True)
    (catalog / "hats.properties").write_text("#HATS catalog\n" + properties)
    assert input_catalog_name(str(catalog)) == expected


def test_input_catalog_name_of_dr_files():
    assert input_catalog_name("/data/ztf_000250_zg_c01_q1_dr5.parquet") == "ZTF DR5"
    assert input_catalog_name("file:///data/field_0250_DR19/") == "ZTF DR19"
    assert input_catalog_name("/data/lightcurves.parquet") == "lightcurves.parquet"


def test_light_curve_inputs_name_kinds_and_refuse_a_mix(sample_file, tmp_path):
    dr = light_curve_inputs([sample_file])
    assert dr.kind is InputKind.DR and dr.files == [str(sample_file)]
    absolute = str(sample_file.resolve())
    assert {dr.catalog_of_file[k] for k in (absolute, "file:" + absolute)} == {"ZTF DR5"}
    catalog = tmp_path / "lc"
    (catalog / "dataset" / "Norder=0" / "Dir=0").mkdir(parents=True)
    (catalog / "hats.properties").write_text("obs_collection=my_lc\n")
    rows = pa.table({"objectid": [1], "n_epochs": [3]})
    pq.write_table(rows, catalog / "dataset" / "Norder=0" / "Dir=0" / "Npix=1.parquet")
    hats = light_curve_inputs([catalog])
    assert hats.kind is InputKind.CATALOG and len(hats.files) == 1
    assert set(hats.catalog_of_file.values()) == {"my_lc"}
    with pytest.raises(InputError, match="not both"):
        light_curve_inputs([catalog, sample_file])
