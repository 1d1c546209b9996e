"""The Example sections of the attack docstrings run and say what they show."""

import doctest

import numpy as np
import pytest
import tensorflow as tf

from keras_poison.attacks import class_pattern
from keras_poison.attacks import label_flip


@pytest.mark.parametrize("module", [label_flip, class_pattern], ids=lambda m: m.__name__)
def test_docstring_examples_hold(module):
    names = {name: getattr(module, name) for name in dir(module)}
    result = doctest.testmod(module, extraglobs={"np": np, "tf": tf, **names})
    assert result.attempted > 0
    assert result.failed == 0
