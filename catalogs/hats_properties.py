"""Properties files of HATS catalogs and collections, as plain string dicts.

Read with jproperties, the Java-properties parser hats itself uses (hats' TableProperties
validates and types the HATS keys, but drops nothing we need and refuses collection files, so
varsky reads the raw strings and its own ``varsky_*`` keys alike).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jproperties import Properties

from catalogs.hats_paths import COLLECTION_PROPERTIES_FILE, DATASET_DIR, PROPERTIES_FILES

#: Keys of a collection's properties.
PRIMARY_TABLE_PROPERTY = "hats_primary_table_url"
MARGINS_PROPERTY = "all_margins"
#: Key saying what kind of table a catalog is (object, source, margin, index ...).
DATAPRODUCT_TYPE_PROPERTY = "dataproduct_type"


def parse_properties(text: str | bytes) -> dict[str, str]:
    """The keys and values of a Java-style properties text (escapes and continuations resolved)."""
    properties = Properties()
    properties.load(text.encode("utf-8") if isinstance(text, str) else text, "utf-8")
    return dict(properties.properties)


def read_properties(
    directory: str | Path, names: Sequence[str] = PROPERTIES_FILES
) -> dict[str, str]:
    """Properties of the first of ``names`` that exists in ``directory`` (empty if none)."""
    for name in names:
        path = Path(directory) / name
        if path.is_file():
            return parse_properties(path.read_bytes())
    return {}


def catalog_properties(catalog_dir: str | Path) -> dict[str, str]:
    """A catalog's properties, merged: its collection's, then the primary catalog's own.

    Looks in ``catalog_dir`` (a catalog, or a HATS collection naming its primary catalog), and
    in its parent when ``catalog_dir`` is a catalog's ``dataset/`` folder. Empty if none.
    """
    catalog_dir = Path(catalog_dir)
    if catalog_dir.name == DATASET_DIR:
        catalog_dir = catalog_dir.parent
    merged = read_properties(catalog_dir, (COLLECTION_PROPERTIES_FILE,))
    primary = merged.get(PRIMARY_TABLE_PROPERTY)
    if primary and (catalog_dir / primary).is_dir():
        merged |= read_properties(catalog_dir / primary)
    merged |= read_properties(catalog_dir)
    return merged
