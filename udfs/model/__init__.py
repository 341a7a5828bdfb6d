"""The network, the variability stage, batched inference, training, calibration and figures."""
