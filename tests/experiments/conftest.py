"""Tiny real data for the experiment tests: 300 train / 100 test 8x8 digits."""

import numpy as np
import pytest

from keras_poison import datasets


@pytest.fixture(scope="session")
def tiny_digits(tmp_path_factory):
    """A `.npz` of the first 300 / 100 packaged digits (real, no download)."""
    (x_train, y_train), (x_test, y_test) = datasets.load("digits")
    path = tmp_path_factory.mktemp("data") / "tiny_digits.npz"
    np.savez(path, x_train=x_train[:300], y_train=y_train[:300], x_test=x_test[:100], y_test=y_test[:100])
    return str(path)


@pytest.fixture()
def cached_base_context(tmp_path):
    """`make(base_model, seed, num_classes)`: a harness `CellContext` on 300
    random 4x4 images whose clean base model is `base_model`, put in the run's
    cache as `base_model()` leaves it, so no training happens."""
    from keras_poison.experiments import scenarios

    def make(base_model, seed, num_classes):
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(300, 4, 4, 1)).astype("float32")
        y = np.arange(300) % num_classes
        context = scenarios.CellContext(
            data=((x, y), (x[:50], y[:50])), num_classes=num_classes,
            class_names=[str(k) for k in range(num_classes)],
            model="lenet5", epochs=1, batch_size=32, learning_rate=1e-3, seed=seed,
            finished=lambda name, seed: None, shared={}, cache_dir=str(tmp_path),
            log=lambda line: None,
        )
        context.shared[("base", seed)] = (base_model, {"accuracy": 0.1, "predictions": y[:50]})
        return context

    return make
