"""Thin engine adapters of :mod:`udfs.pipeline`: Spark mapInArrow, Dask tasks, the lsdb API."""
