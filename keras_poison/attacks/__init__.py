"""Data-poisoning attacks, each usable as a tf.data transform and on NumPy arrays."""

from keras_poison.attacks.base import PoisoningAttack
from keras_poison.attacks.class_pattern import ClassPatternNoise
from keras_poison.attacks.label_flip import RandomFlip
from keras_poison.attacks.label_flip import TargetedFlip
from keras_poison.attacks.label_flip import confused_class_pairs
