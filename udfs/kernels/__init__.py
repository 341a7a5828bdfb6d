"""Per-object numerics on flat Arrow and numpy arrays (numba where it pays): no model, no engine."""
