"""Defences: layers, losses, callbacks and transforms against poisoning."""

from keras_poison.defences.callbacks import PoisonMonitor
from keras_poison.defences.callbacks import RestoredWeightsCheck
from keras_poison.defences.layers import ColourCentering
from keras_poison.defences.layers import ImageAugmentation
from keras_poison.defences.losses import BootstrappingCrossentropy
from keras_poison.defences.losses import GeneralizedCrossEntropy
from keras_poison.defences.losses import LabelSmoothingCrossentropy
from keras_poison.defences.losses import SymmetricCrossEntropy
from keras_poison.defences.losses import bootstrapping_crossentropy
from keras_poison.defences.losses import generalized_cross_entropy
from keras_poison.defences.losses import label_smoothing_crossentropy
from keras_poison.defences.losses import symmetric_cross_entropy
from keras_poison.defences.pattern_removal import ClassPatternRemoval
from keras_poison.defences.recipes import SeedDefences
from keras_poison.defences.recipes import seed_defences
