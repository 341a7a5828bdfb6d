"""Simulated light curves and skies with their truth, and noise-only twins of real light curves."""
