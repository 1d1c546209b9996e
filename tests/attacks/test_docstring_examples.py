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
from keras_poison.attacks import class_convolution
from keras_poison.attacks import class_oriented
from keras_poison.attacks import class_pattern
from keras_poison.attacks import evasive_flip
from keras_poison.attacks import label_flip
from keras_poison.attacks import one_pixel
from keras_poison.attacks import poison_set
from keras_poison.attacks import separable_noise
from keras_poison.defences import callbacks as defence_callbacks
from keras_poison.defences import layers
from keras_poison.defences import losses
from keras_poison.defences import pattern_removal
from keras_poison.defences import recipes
from keras_poison.defences import integrity
from keras_poison.defences import sanitize
from keras_poison.defences.detectors import activation_clustering
from keras_poison.defences.detectors import class_pattern as class_pattern_detector
from keras_poison.defences.detectors import inspection
from keras_poison.defences.detectors import knn
from keras_poison.defences.detectors import label_issues
from keras_poison.defences.detectors import margins
from keras_poison.defences.detectors import report
from keras_poison.defences.detectors import spectral

MODULES = [
    label_flip, class_pattern, class_oriented, poison_set, callbacks,
    class_convolution, one_pixel, separable_noise, evasive_flip,
    layers, losses, defence_callbacks, pattern_removal, recipes,
    report, spectral, activation_clustering, knn, label_issues,
    class_pattern_detector, sanitize, inspection, integrity, margins,
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
