"""A `.keras` file that uses the library's objects, loaded in a new process.

`import keras_poison` registers every layer, loss and callback with Keras;
Keras itself imports no third-party module a saved file names. So a fresh
process loads the file after `import keras_poison`, and without it gets
Keras' own "Could not locate class" error (the README says so).
"""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_poison as kp


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "defended.keras"
    defences = kp.class_pattern_defences(num_classes=3, seed=0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            *defences.layers,
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", loss=kp.GeneralizedCrossentropy(q=0.7))
    x = np.random.default_rng(0).uniform(size=(4, 8, 8, 3)).astype("float32")
    model.save(path)
    np.save(path.with_suffix(".npy"), x)
    np.save(path.with_suffix(".expected.npy"), model.predict(x, verbose=0))
    return path


def _load_in_new_process(path, import_first):
    script = textwrap.dedent(
        f"""
        import numpy as np
        {"import keras_poison" if import_first else ""}
        import keras
        model = keras.saving.load_model({str(path)!r})
        x = np.load({str(path.with_suffix(".npy"))!r})
        expected = np.load({str(path.with_suffix(".expected.npy"))!r})
        np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-6)
        print(type(model.loss).__name__)
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )


def test_a_fresh_process_loads_the_file_after_import_keras_poison(saved):
    run = _load_in_new_process(saved, import_first=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().endswith("GeneralizedCrossentropy")


def test_without_the_import_keras_says_it_cannot_locate_the_class(saved):
    run = _load_in_new_process(saved, import_first=False)
    assert run.returncode != 0
    assert "Could not locate class" in run.stderr and "keras_poison" in run.stderr
