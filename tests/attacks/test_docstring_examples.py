"""The Example sections of the public docstrings run and say what they show."""

import doctest
import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_poison
from keras_poison import callbacks
from keras_poison.attacks import class_oriented
from keras_poison.attacks import class_pattern
from keras_poison.attacks import label_flip
from keras_poison.attacks import poison_set
from keras_poison.defences import callbacks as defence_callbacks
from keras_poison.defences import layers
from keras_poison.defences import losses
from keras_poison.defences import pattern_removal
from keras_poison.defences import recipes

MODULES = [
    label_flip, class_pattern, class_oriented, poison_set, callbacks,
    layers, losses, defence_callbacks, pattern_removal, recipes,
]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples_hold(module):
    names = {name: getattr(module, name) for name in dir(module)}
    extraglobs = {
        "np": np,
        "tf": tf,
        "os": os,
        "tempfile": tempfile,
        "keras": keras,
        "keras_poison": keras_poison,
        **names,
    }
    result = doctest.testmod(module, extraglobs=extraglobs)
    assert result.attempted > 0
    assert result.failed == 0
