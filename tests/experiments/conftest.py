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
