"""Data-poisoning attacks, each usable as a tf.data transform and on NumPy arrays."""

from keras_poison.attacks.base import PoisoningAttack
from keras_poison.attacks.class_convolution import ClassConvolution
from keras_poison.attacks.class_oriented import SupplanterPoison
from keras_poison.attacks.class_oriented import VictimPoison
from keras_poison.attacks.class_pattern import ClassPatternNoise
from keras_poison.attacks.class_pattern import SmoothClassPattern
from keras_poison.attacks.crafting import logit_function
from keras_poison.attacks.direct_gradient import DirectGradientPoison
from keras_poison.attacks.evasive_flip import EvasiveFlip
from keras_poison.attacks.label_flip import RandomFlip
from keras_poison.attacks.label_flip import TargetedFlip
from keras_poison.attacks.label_flip import confused_class_pairs
from keras_poison.attacks.label_flip import relabel_seeds
from keras_poison.attacks.one_pixel import OnePixelShortcut
from keras_poison.attacks.poison_set import InjectPoisons
from keras_poison.attacks.poison_set import PoisonSet
from keras_poison.attacks.separable_noise import SeparableNoise
