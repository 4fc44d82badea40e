"""The model engine: a process that runs every TensorFlow call of the GUI, one at a time.

`protocol` (the messages and what they carry), `server` (the engine process), `client`
(the GUI's side). No Qt here: the import contract in pyproject.toml forbids it.
"""
