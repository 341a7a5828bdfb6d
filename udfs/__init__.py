"""What runs on the light curves, in layers: each module imports only the layers listed before it.

- ``udfs.kernels``: per-object numerics on flat Arrow/numpy arrays (cuts, association, dm-dt,
  periodogram, features, model inputs, bad exposures).
- ``udfs.simulators``: simulated light curves and skies, noise-only twins.
- ``udfs.model``: the network, the variability stage, batched inference, training, calibration.
- ``udfs.pipeline``: the classify chain of one partition, the one model cache.
- ``udfs.engines``: thin Spark, Dask and lsdb adapters of the pipeline.

tests/test_layers.py holds the order.
"""
