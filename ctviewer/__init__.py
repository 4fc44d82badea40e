"""ctviewer: browse CT images, train and check a small binary CNN, report honest metrics."""

__version__ = "0.1.0"
