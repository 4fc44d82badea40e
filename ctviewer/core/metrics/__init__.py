"""Numbers about predictions: per-image predictions, metrics with intervals, thresholds, curves, reports."""
