"""Headless core of ctviewer: no Qt, no pyqtgraph. Pure Python, numpy, pydicom and TensorFlow."""
