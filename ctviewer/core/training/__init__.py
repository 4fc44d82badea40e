"""Training: the tf.data pipeline, the Keras control callback, `fit` and `cross_validate`."""
