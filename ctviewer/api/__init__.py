"""ctviewer for a Keras user in a notebook: the doctor and an honest evaluation on your own model and arrays.

Stable public names::

    from ctviewer.api import diagnose, evaluate, predict_per_sample, keras_callback, from_arrays

    diagnose(model, x, y, validation_split=0.1, history=history)   # findings, printable and JSON
    evaluate(y_test, prob, patients=patient_ids)                    # metrics with 95% intervals
    predict_per_sample(model, x)                                    # inference-mode probabilities
    model.fit(x, y, validation_split=0.1, callbacks=[keras_callback(x, y, validation_split=0.1)])
    from_arrays(x, y, patients)                                     # a Dataset for cross_validate

Importing this module imports neither Qt nor TensorFlow; TensorFlow loads when a function
that runs a model is called.
"""

from __future__ import annotations

from ctviewer.api.callback import keras_callback
from ctviewer.api.diagnosis import Diagnosis, diagnose
from ctviewer.api.evaluation import ConfusionTable, Evaluation, evaluate
from ctviewer.api.prediction import predict_per_sample
from ctviewer.core.data.arrays import from_arrays

__all__ = ["ConfusionTable", "Diagnosis", "Evaluation", "diagnose", "evaluate", "from_arrays", "keras_callback",
           "predict_per_sample"]
