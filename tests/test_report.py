"""`varsky report` on a real classification catalog: the DR5 sample classified by the real model."""

import base64
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from catalogs.errors import InputError
from catalogs.hats_properties import catalog_properties, parse_properties
from catalogs.hats_writer import partition_relative_path
from catalogs.healpix import tile_of
from catalogs.provenance import VARSKY_VERSION, file_sha256
from catalogs.schema import BAND_NAMES, CARRIED_COLUMNS, DEFAULT_MIN_EPOCHS, TRANSIENT_CLASS_NAMES
from reports.catalog_reading import catalog_classes, catalog_files, read_classification_catalog
from reports.catalog_report import make_report
from reports.report_lightcurves import fetch_lightcurves
from reports.report_tables import CLASS_TABLE, EPOCH_TABLE, SCORE_TABLE, TILE_TABLE, summary_tables
from udfs.kernels.dmdt import DmDtGrid
from udfs.kernels.lightcurve_cuts import apply_quality_cuts
from udfs.kernels.model_inputs import flat_lightcurves
from udfs.model.classifier import CLASS_NAMES, Classifier, ModelCard
from udfs.model.inference import classify_batch
from udfs.model.saliency import finite_difference_saliency
from udfs.model.transients import combine, head_features, row_offsets

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def kept_lightcurves(sample_file: Path) -> pa.Table:
    """Cut rows of the sample that pass classify's cuts."""
    table = pq.read_table(sample_file)
    table = table.append_column("source_file", pa.array([str(sample_file)] * table.num_rows))
    table = table.append_column("source_row", pa.array(np.arange(table.num_rows)))
    cut = apply_quality_cuts(table.combine_chunks().to_batches()[0], DEFAULT_MIN_EPOCHS)
    return pa.Table.from_batches([cut]).filter(pc.is_null(cut.column("reject_reason")))


def write_catalog(base: Path, sample_file: Path, model_dir: Path) -> tuple[pa.Table, int]:
    """Classify the sample as `varsky classify` does, written as HATS tiles; (rows, order)."""
    kept = kept_lightcurves(sample_file)
    batch = kept.select([*CARRIED_COLUMNS, "lightcurve"]).combine_chunks().to_batches()[0]
    rows = pa.Table.from_batches([classify_batch(batch, Classifier.load(model_dir), 256)])
    n = rows.num_rows
    rows = rows.drop_columns(["source_file"])
    for name, value in [
        ("input_file", sample_file.name),
        ("varsky_version", VARSKY_VERSION),
        ("model_sha256", file_sha256(model_dir / "model.keras")),
        ("dmdt_grid", "mahabal2017"),
    ]:
        rows = rows.append_column(name, pa.array([value] * n, pa.string()))
    hp29 = rows.column("_healpix_29").to_numpy()
    order = next(k for k in range(30) if np.unique(tile_of(hp29, k)).size >= 2)
    for pixel in np.unique(tile_of(hp29, order)):
        path = base / "dataset" / partition_relative_path(order, int(pixel))
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(rows.filter(pa.array(tile_of(hp29, order) == pixel)), path)
    (base / "hats.properties").write_text(
        f"#HATS catalog\nvarsky_inputs={sample_file}\nvarsky_model_dir={model_dir}\n"
    )
    return rows, order


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, sample_file, model_dir):
    base = tmp_path_factory.mktemp("report") / "catalog"
    rows, order = write_catalog(base, sample_file, model_dir)
    return base, rows, order


@pytest.fixture(scope="module")
def report(catalog, tmp_path_factory):
    return make_report(catalog[0], tmp_path_factory.mktemp("out"), log=lambda line: None)


def png_bytes_ok(data: bytes) -> bool:
    return len(data) > len(PNG_MAGIC) and data.startswith(PNG_MAGIC)


# --- Reading the catalog ---
def test_catalog_reads_every_row_with_its_tile(catalog):
    base, rows, order = catalog
    df = read_classification_catalog(base)
    assert len(df) == rows.num_rows
    assert sorted(df["objectid"]) == sorted(rows.column("objectid").to_pylist())
    assert set(df["Norder"]) == {order}
    hp29 = df["_healpix_29"].to_numpy()
    np.testing.assert_array_equal(df["Npix"].to_numpy(), tile_of(hp29, order))


def test_margins_metadata_and_hidden_files_are_skipped(catalog, tmp_path):
    base, rows, _ = catalog
    collection = tmp_path / "collection"
    shutil.copytree(base, collection / "cat")
    (collection / "collection.properties").write_text(
        "# a HATS collection\nhats_primary_table_url=cat\nall_margins=cat_10arcs\n"
    )
    one_file = sorted((base / "dataset").rglob("*.parquet"))[0]
    for extra in ["cat_10arcs/dataset/Norder=3/Dir=0/Npix=1.parquet",
                  "other_margin/x.parquet", ".hidden/x.parquet", "cat/.x.parquet"]:  # fmt: skip
        (collection / extra).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(one_file, collection / extra)
    # A margin named neither in the collection nor *_margin is known by its properties.
    shutil.copytree(collection / "cat_10arcs", collection / "cat_5arcs")
    (collection / "cat_5arcs" / "hats.properties").write_text("dataproduct_type=margin\n")
    (collection / "cat" / "dataset" / "_metadata").write_bytes(b"not data")
    files = catalog_files(collection)
    assert all(f.parts[-5] == "cat" for f in files) and len(files) >= 2
    assert len(read_classification_catalog(collection)) == rows.num_rows
    properties = catalog_properties(collection)
    assert properties["hats_primary_table_url"] == "cat"
    assert properties["varsky_model_dir"].endswith("varsky_dmdt_cnn")
    assert catalog_properties(collection / "cat" / "dataset") == catalog_properties(
        collection / "cat"
    )


def test_properties_are_parsed_as_hats_writes_them():
    text = (
        "#HATS catalog\n! also a comment\n\n"
        "varsky_inputs=/data/a b.parquet,s3\\://bucket/c\n"
        "hats_nrows = 12\nkey:value\\=x\\u00e9\nlong=one\\\n    two\n"
    )
    assert parse_properties(text) == {
        "varsky_inputs": "/data/a b.parquet,s3://bucket/c",
        "hats_nrows": "12",
        "key": "value=xé",
        "long": "onetwo",
    }


def test_a_directory_without_parquet_is_named_in_the_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no data here")
    with pytest.raises(InputError, match=rf"{re.escape(str(tmp_path))}: .*no Parquet file"):
        read_classification_catalog(tmp_path)
    with pytest.raises(InputError, match=r"missing: catalog directory does not exist"):
        read_classification_catalog(tmp_path / "missing")


# --- Tables ---
def test_summary_tables_count_every_object(catalog):
    base, rows, order = catalog
    df = read_classification_catalog(base)
    names = catalog_classes(df)
    assert names == CLASS_NAMES + TRANSIENT_CLASS_NAMES  # the shipped model's 21
    tables = summary_tables(df, names)
    expected = Counter(rows.column("predicted_class").to_pylist())

    classes = tables[CLASS_TABLE]
    assert list(classes["class"]) == list(names)
    assert classes["objects"].sum() == rows.num_rows
    assert dict(zip(classes["class"], classes["objects"], strict=True)) == {
        c: expected.get(c, 0) for c in names
    }
    assert classes["fraction"].sum() == pytest.approx(1.0)

    scores = tables[SCORE_TABLE]
    assert dict(zip(scores["class"], scores["objects"], strict=True)) == dict(expected)
    assert (scores["score_p10"] <= scores["score_median"]).all()
    assert (scores["score_median"] <= scores["score_p90"]).all()
    top = scores.set_index("class").loc["constant", "score_median"]
    constant = pc.filter(rows.column("predicted_score"),
                         pc.equal(rows.column("predicted_class"), "constant"))  # fmt: skip
    assert top == pytest.approx(float(np.median(constant.to_numpy())))

    tiles = tables[TILE_TABLE]
    hp29 = rows.column("_healpix_29").to_numpy()
    pixels, counts = np.unique(tile_of(hp29, order), return_counts=True)
    assert list(tiles["norder"]) == [order] * pixels.size
    assert list(tiles["npix"]) == list(pixels) and list(tiles["objects"]) == list(counts)
    assert tiles["variables"].sum() == rows.num_rows - expected["constant"] - expected["bogus"]

    epochs = tables[EPOCH_TABLE].set_index("band")
    n_good = rows.column("n_good").to_numpy()
    assert epochs.loc["all", "objects_with_epochs"] == rows.num_rows
    assert epochs.loc["all", "min"] == n_good.min() >= DEFAULT_MIN_EPOCHS
    assert epochs.loc["all", "median"] == np.median(n_good)
    assert epochs.loc["g", "objects_with_epochs"] == rows.num_rows  # a zg file: g only
    assert list(epochs.index) == ["all", "g"]  # r and i, which no object has, are left out


def test_tiles_are_chosen_when_the_catalog_has_no_hats_paths(catalog):
    base, rows, _ = catalog
    df = read_classification_catalog(base).drop(columns=["Norder", "Npix"])
    tiles = summary_tables(df, CLASS_NAMES)[TILE_TABLE]
    assert 1 <= len(tiles) <= 50 and tiles["objects"].sum() == rows.num_rows
    assert tiles["norder"].nunique() == 1


# --- Light curves ---
def test_fetched_lightcurves_equal_the_dr_rows(catalog, sample_file):
    _, rows, _ = catalog
    wanted = rows.column("objectid").to_numpy()[[0, 7, -1]]
    dr = pq.read_table(sample_file)
    dr_ids = dr.column("objectid").to_pylist()
    for paths in ([sample_file], [sample_file.parent]):
        found = fetch_lightcurves(wanted[::-1], paths, input_files=[sample_file.name])
        assert sorted(found.column("objectid").to_pylist()) == sorted(wanted)
        for row in found.to_pylist():
            source = dr.filter(pc.equal(dr.column("objectid"), row["objectid"])).to_pylist()
            assert len(source) == 1 and row["source_row"] == dr_ids.index(row["objectid"])
            flags = np.asarray(source[0]["catflags"])
            good = flags == 0
            order = np.argsort(np.asarray(source[0]["hmjd"], np.float64)[good], kind="stable")
            lightcurve = row["lightcurve"]
            np.testing.assert_array_equal(
                lightcurve["hmjd"], np.asarray(source[0]["hmjd"], np.float64)[good][order]
            )
            np.testing.assert_array_equal(
                lightcurve["mag"], np.asarray(source[0]["mag"], np.float32)[good][order]
            )
            assert set(lightcurve["band"]) == {0}
    assert fetch_lightcurves([123], [sample_file]).num_rows == 0


def test_remade_inputs_give_the_catalog_probabilities(catalog, sample_file, model_dir):
    _, rows, _ = catalog
    top = np.argsort(-rows.column("predicted_score").to_numpy())[:5]
    ids = rows.column("objectid").to_numpy()[top]
    found = fetch_lightcurves(ids, [sample_file])
    assert found.column("objectid").to_pylist() == sorted(ids)  # file order
    classifier = Classifier.load(model_dir)
    flat = flat_lightcurves(found.column("lightcurve"))
    remade = classifier.predict(classifier.card.model_inputs(flat))
    if classifier.has_transients:  # the catalog holds the CNN's and the head's, combined
        p_head = classifier.predict_transients(head_features(flat))
        offsets = row_offsets(classifier.type_log_offsets, np.diff(flat.offsets))
        remade = combine(remade, classifier.classes, p_head, offsets)[0]
    by_id = {oid: k for k, oid in enumerate(rows.column("objectid").to_pylist())}
    expected = np.column_stack(
        [
            rows.column(f"p_{c}").to_numpy()[[by_id[i] for i in sorted(ids)]]
            for c in classifier.output_classes
        ]
    )
    np.testing.assert_allclose(remade, expected, atol=1e-6)


def test_lightcurves_are_fetched_from_a_hats_lightcurve_catalog(tmp_path, sample_file):
    # The layout `varsky ingest` writes: one row per object, n_epochs, a lightcurve struct.
    kept = kept_lightcurves(sample_file).slice(0, 60)
    table = pa.table({
        "objectid": kept.column("objectid"),
        "ra": kept.column("ra"),
        "dec": kept.column("dec"),
        "_healpix_29": kept.column("_healpix_29"),
        "n_epochs": kept.column("n_good"),
        **{f"n_epochs_{b}": kept.column(f"n_good_{b}") for b in BAND_NAMES},
        "lightcurve": kept.column("lightcurve"),
    })  # fmt: skip
    hp29 = table.column("_healpix_29").to_numpy()
    base = tmp_path / "lightcurves"
    for pixel in np.unique(tile_of(hp29, 9)):
        path = base / "dataset" / partition_relative_path(9, int(pixel))
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(pa.array(tile_of(hp29, 9) == pixel)), path)
    (base / "hats.properties").write_text("dataproduct_type=object\n")
    wanted = [3, 40]
    found = fetch_lightcurves(
        table.column("objectid").to_numpy()[wanted], [base], healpix29=hp29[wanted]
    )
    assert sorted(found.column("objectid").to_pylist()) == sorted(
        table.column("objectid").to_numpy()[wanted]
    )
    for row in found.to_pylist():
        k = table.column("objectid").to_pylist().index(row["objectid"])
        assert row["lightcurve"] == table.column("lightcurve")[k].as_py()
        assert row["reject_reason"] is None


# --- The report ---
def test_every_figure_is_a_png(report, catalog):
    _, rows, _ = catalog
    names = sorted(p.name for p in report.figures.values())
    n_classes = len(set(rows.column("predicted_class").to_pylist()))
    n_example_figures = -(-n_classes // 3)
    assert names == sorted(
        ["sky_map.png", "confusion_matrix.png", "reliability.png", "saliency.png"]
        + [f"dmdt_examples_{k:02d}.png" for k in range(1, n_example_figures + 1)]
    )
    for path in report.figures.values():
        assert path.parent == report.output_dir
        assert png_bytes_ok(path.read_bytes()), path
    assert sorted(p.name for p in report.output_dir.glob("*.png")) == names
    assert report.notes == []  # model, card and light curves all agree with the catalog
    from reports.catalog_report import REAL_VALIDATION_TABLE

    real = report.tables[REAL_VALIDATION_TABLE]  # the shipped card's real-star scores
    assert {"crts_train", "tdss_quasars"} <= set(real["set"])
    assert "RRd" in set(real["source label"])


def test_html_page_holds_the_tables_and_its_figures(report):
    page = report.html_path.read_text()
    assert report.html_path.name == "report.html"
    for table in report.tables.values():
        for name in table.get("class", []):
            assert f"<td>{name}</td>" in page
    links = re.findall(r'href="([^"]+)"', page)
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(links) == len(uris) == len(report.figures) > 0
    for link, uri in zip(links, uris, strict=True):
        linked = report.output_dir / link
        assert linked.is_file() and png_bytes_ok(linked.read_bytes())
        assert base64.b64decode(uri, validate=True) == linked.read_bytes()
    summary = report.summary_path.read_text()
    for name in report.tables[CLASS_TABLE]["class"]:
        assert f"| {name} |" in summary


def test_cli_writes_the_report(catalog, sample_file, tmp_path, capsys):
    from jobs.cli import main

    out = tmp_path / "out"
    argv = ["report", str(catalog[0]), "--output", str(out), "--lightcurves", str(sample_file)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{catalog[1].num_rows:,} objects" in printed and str(out / "report.html") in printed
    assert png_bytes_ok((out / "sky_map.png").read_bytes())
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_report_without_light_curves_or_model_says_what_it_skipped(catalog, tmp_path):
    base, rows, _ = catalog
    result = make_report(
        base, tmp_path / "out", model_dir=tmp_path / "no_model", lightcurve_paths=[],
        log=lambda line: None,
    )  # fmt: skip
    assert [p.name for p in result.figures.values()] == ["sky_map.png"]
    assert any("no model card" in note and "no_model" in note for note in result.notes)
    assert "no model card" in result.html_path.read_text()


# --- Saliency ---
def tiny_classifier(hidden: int | None, seed: int = 1):
    """A classifier of (3, 4, 3) uint8 images; linear output when ``hidden`` is None."""
    import keras
    from keras import layers

    grid = DmDtGrid.from_edges([0.0, 1.0, 10.0, 100.0, 1000.0], [-1.0, 0.0, 0.5, 1.0], "tiny")
    card = ModelCard.for_grid(grid, classes=("a", "b"))
    image = keras.Input(shape=card.input_shape, dtype="uint8", name="dmdt_image")
    x = layers.Flatten()(layers.Rescaling(1.0 / 255.0)(image))
    rng = np.random.default_rng(seed)
    if hidden is None:
        output = layers.Dense(2, name="out")(x)
    else:
        x = layers.Dense(hidden, activation="tanh", name="hidden")(x)
        output = layers.Dense(2, activation="sigmoid", name="out")(x)
    model = keras.Model(image, output)
    for layer in model.layers:
        if layer.weights:
            kernel, bias = layer.get_weights()
            layer.set_weights([rng.normal(0.0, 0.5, kernel.shape), rng.normal(0, 0.1, bias.shape)])
    return Classifier(model, card)


def tiny_images(seed: int = 2) -> np.ndarray:
    images = np.random.default_rng(seed).integers(0, 200, (3, 3, 4, 3)).astype(np.uint8)
    images[1, 0, 0, 0] = 255  # no room above: a backward difference
    images[1, 2, 3, 1] = 250
    return images


def test_saliency_of_a_linear_model_is_its_weights():
    classifier = tiny_classifier(hidden=None)
    images = tiny_images()
    kernel = classifier.model.get_layer("out").get_weights()[0]  # (36, 2), per unit image
    for class_index in (0, 1):
        saliency = finite_difference_saliency(
            classifier, {"dmdt_image": images}, index=1, class_index=class_index
        )
        assert saliency.shape == (3, 4, 3)
        np.testing.assert_allclose(
            saliency, kernel[:, class_index].reshape(3, 4, 3), rtol=0, atol=2e-4
        )


def test_saliency_matches_the_gradient_of_the_float_network():
    import tensorflow as tf

    classifier = tiny_classifier(hidden=8)
    images = tiny_images()
    model = classifier.model
    unit = tf.Variable(images[2:3].astype(np.float32) / 255.0)
    with tf.GradientTape() as tape:
        flat = tf.reshape(unit, (1, -1))
        p = model.get_layer("out")(model.get_layer("hidden")(flat))[0, 1]
    gradient = tape.gradient(p, unit).numpy()[0]
    scale = np.abs(gradient).max()
    fine = finite_difference_saliency(classifier, {"dmdt_image": images}, 2, 1, step=1)
    np.testing.assert_allclose(fine, gradient, rtol=0, atol=0.01 * scale)
    coarse = finite_difference_saliency(classifier, {"dmdt_image": images}, 2, 1)
    np.testing.assert_allclose(coarse, gradient, rtol=0, atol=0.1 * scale)
    assert np.corrcoef(coarse.ravel(), gradient.ravel())[0, 1] > 0.99


def test_saliency_checks_its_arguments():
    classifier = tiny_classifier(hidden=None)
    inputs = {"dmdt_image": tiny_images()}
    with pytest.raises(ValueError, match="step must be in 1..255, got 0"):
        finite_difference_saliency(classifier, inputs, 0, 0, step=0)
    with pytest.raises(IndexError, match="index must be in 0..2, got 3"):
        finite_difference_saliency(classifier, inputs, 3, 0)
    with pytest.raises(IndexError, match="class_index must be in 0..1, got 2"):
        finite_difference_saliency(classifier, inputs, 0, 2)
    with pytest.raises(TypeError, match="must be uint8"):
        finite_difference_saliency(classifier, {"dmdt_image": inputs["dmdt_image"] * 1.0}, 0, 0)


def test_reliability_figure_and_real_table_from_the_card(tmp_path, model_dir):
    from dataclasses import replace

    from reports.report_figures import plot_model_reliability, real_validation_table
    from udfs.model.classifier import ModelCard

    card = replace(ModelCard.read(model_dir), calibration=None, real_validation=None)
    assert plot_model_reliability(card, tmp_path / "r.png") is None
    assert real_validation_table(card) is None
    curve = {"confidence": [0.15, float("nan"), 0.95], "accuracy": [0.1, float("nan"), 0.9]}
    card = replace(
        card,
        calibration={
            "reliability": {"before": curve, "after": curve},
            "ece_real_validation_before": 0.2,
            "ece_real_validation_after": 0.05,
        },
        real_validation={
            "crts_train": {
                "per_label": {"RRd": {"n": 50, "recall": 0.9, "predicted": {"rrc": 45, "ew": 5}}},
                "mahabal2017": {"paper": {"RRd": 0.0}},
            }
        },
    )
    path = plot_model_reliability(card, tmp_path / "r.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    table = real_validation_table(card)
    row = table.iloc[0].to_dict()
    assert row["source label"] == "RRd" and row["recall"] == 0.9 and row["Mahabal+2017"] == 0.0
    assert row["called"] == "rrc 45, ew 5"


def test_page_leads_with_results_and_folds_the_provenance_away(report):
    page = report.html_path.read_text()
    h1 = re.search(r"<h1>([^<]+)</h1>", page).group(1)
    assert h1.endswith(f"{report.n_objects:,} objects classified by varsky")
    order = ["<h2>Results</h2>", "Objects per predicted class", "sky_map.png", "dmdt_examples_01",
             "<h2>The model, and where its numbers come from</h2>", "The confusion matrix is the",
             "not how it does on real stars", "On real stars: the real-validation table",
             "confusion_matrix.png", "<details><summary>Provenance"]  # fmt: skip
    where = [page.index(text) for text in order]
    assert where == sorted(where)
    assert "model directory (report)" in page[page.index("<details>") :]
    summary = report.summary_path.read_text()
    assert summary.index("## Results") < summary.index("## Provenance")


def test_best_period_and_the_folded_examples():
    from reports.report_figures import FOLDED_CLASSES, best_period_days

    rng = np.random.default_rng(3)
    hmjd = 58_300.0 + np.sort(rng.uniform(0.0, 400.0, 150))
    mag = 17.0 + 0.3 * np.sin(2 * np.pi * hmjd / 0.613) + rng.normal(0.0, 0.02, hmjd.size)
    lightcurve = {"hmjd": hmjd, "mag": mag, "magerr": np.full(hmjd.size, 0.02),
                  "band": np.zeros(hmjd.size, np.int64)}  # fmt: skip
    assert abs(best_period_days(lightcurve) - 0.613) < 0.001
    assert best_period_days({k: v[:5] for k, v in lightcurve.items()}) is None
    assert FOLDED_CLASSES["ew"] == 2 and "constant" not in FOLDED_CLASSES
