# %% [markdown]
# # The question, rebuilt in a notebook, then diagnosed and fixed
#
# A researcher trained a small Keras CNN on CT slices to tell contrast from no contrast.
# The arrays were filled class folder by class folder, `model.fit(..., validation_split=0.1)`
# validated on the last 10% (one class only), and the network's BatchNorm and Dropout gave
# other numbers in training mode than at prediction. Validation looked perfect; the model
# had learnt nothing. This script rebuilds that setup on tiny synthetic slices (runs in
# well under a minute on a CPU), lets `ctviewer.api.diagnose` name what went wrong, and
# applies the fix. Open it in VS Code / Jupyter (the `# %%` cells) or run it with `python`.

# %%
import keras
import numpy as np

from ctviewer.api import diagnose, evaluate, keras_callback, predict_per_sample
from ctviewer.core.data.demo import demo_arrays
from ctviewer.core.data.splits import holdout_assignment

SIZE = 32  # the question used 512 x 512 slices; 32 px keeps this example fast
keras.utils.set_random_seed(0)

# %% [markdown]
# ## The question's arrays: sorted by class, as read folder by folder

# %%
x_hu, y, patients = demo_arrays(n_patients=6, slices_per_patient=3, size=SIZE)  # all contrast first
x = np.clip((x_hu + 1000.0) / 2000.0, 0.0, 1.0)[..., None]  # HU -1000..1000 -> [0, 1]
print(f"{len(y)} slices of {len(set(patients))} patients; labels in order: {''.join(map(str, y))}")


# %% [markdown]
# ## The question's network, compiled with SGD, fitted with `validation_split=0.1`

# %%
def question_network(size: int) -> keras.Model:
    inputs = keras.Input((size, size, 1))
    z = inputs
    for _ in range(3):
        z = keras.layers.Conv2D(32, 3, activation="relu")(z)
        z = keras.layers.BatchNormalization()(z)
        z = keras.layers.MaxPooling2D()(z)
    z = keras.layers.Flatten()(z)
    z = keras.layers.Dropout(0.7)(z)
    for units in (16, 8, 4):
        z = keras.layers.Dense(units, activation="relu")(z)
        z = keras.layers.BatchNormalization()(z)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(z))


model = question_network(SIZE)
model.compile(keras.optimizers.SGD(learning_rate=0.01), "categorical_crossentropy", metrics=["accuracy"])
# keras_callback gets the same arrays and split: Keras does not hand them to callbacks.
history = model.fit(x, keras.utils.to_categorical(y, 2), validation_split=0.1, epochs=2, batch_size=10,
                    verbose=0, callbacks=[keras_callback(x, y, validation_split=0.1,
                                                         classes=("no_contrast", "contrast"))])
print("val_accuracy per epoch:", [round(v, 3) for v in history.history["val_accuracy"]])

# %% [markdown]
# ## The doctor

# %%
report = diagnose(model, x, y, validation_split=0.1, history=history, patients=patients,
                  classes=("no_contrast", "contrast"))
print(report)  # in a notebook, `report` alone shows it as a table
print("codes:", ", ".join(dict.fromkeys(report.codes)))

# %% [markdown]
# ## The fix
#
# 1. Hold out whole patients, both classes on each side (never the tail of sorted arrays).
# 2. Shuffle the training rows and pass the held-out part as `validation_data`.
# 3. Predict in inference mode (`predict_per_sample`: the same number every call).
# 4. Report metrics with intervals, per image and per patient.

# %%
held_out = holdout_assignment(y, patients, 0.25, seed=0)
train_rows = np.random.default_rng(0).permutation(np.flatnonzero(~held_out))
val_rows = np.flatnonzero(held_out)
x_train, y_train, p_train = x[train_rows], y[train_rows], patients[train_rows]
x_val, y_val, p_val = x[val_rows], y[val_rows], patients[val_rows]

keras.utils.set_random_seed(0)
fixed = question_network(SIZE)
fixed.compile(keras.optimizers.SGD(learning_rate=0.01), "categorical_crossentropy", metrics=["accuracy"])
fixed.fit(x_train, keras.utils.to_categorical(y_train, 2), validation_data=(x_val, keras.utils.to_categorical(y_val, 2)),
          epochs=2, batch_size=10, verbose=0,
          callbacks=[keras_callback(x_train, y_train, validation_data=(x_val, y_val), patients=p_train,
                                    classes=("no_contrast", "contrast"))])

after = diagnose(fixed, x_train, y_train, patients=p_train, classes=("no_contrast", "contrast"), baseline=False)
print(after)
gone = {"tail-split-one-class", "patient-leak"} - set(after.codes)
print("gone after the fix:", ", ".join(sorted(gone)))

# %%
prob = predict_per_sample(fixed, x_val)
assert np.array_equal(prob, predict_per_sample(fixed, x_val)), "inference mode is reproducible"
result = evaluate(y_val, prob, patients=p_val, classes=("no_contrast", "contrast"))
print(result)  # a handful of held-out patients: the intervals say how little that tells
print(result.confusion)
# Honest split, honest prediction: now the numbers show what the question's network learns from
# 27 slices in two epochs. The doctor's remaining findings (collapse, BatchNorm) are about the model.

# %% [markdown]
# With real data, the better fix is ctviewer's default recipe under patient-grouped
# cross-validation, on the same arrays:
#
#     from ctviewer.api import from_arrays
#     from ctviewer.core.model.recipes import default_config
#     from ctviewer.core.training.cv import cross_validate
#     cv = cross_validate(from_arrays(x_hu, y, patients), default_config("default"), folds=5)
#     print(cv.metrics.auc, cv.metrics.auc_ci)
