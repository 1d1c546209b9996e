"""Defences: layers, losses, callbacks and transforms against poisoning."""

from keras_poison.defences.callbacks import PoisonMonitor
from keras_poison.defences.detectors import ActivationClusteringDetector
from keras_poison.defences.detectors import ClassPatternDetector
from keras_poison.defences.detectors import DetectionMetrics
from keras_poison.defences.detectors import DetectionReport
from keras_poison.defences.detectors import KNNDetector
from keras_poison.defences.detectors import LabelIssueDetector
from keras_poison.defences.detectors import AUMDetector
from keras_poison.defences.detectors import MarginRecorder
from keras_poison.defences.detectors import SpectralSignatureDetector
from keras_poison.defences.detectors import consensus
from keras_poison.defences.detectors import rank_average
from keras_poison.defences.detectors import plot_confusion_matrix
from keras_poison.defences.detectors import plot_suspicious
from keras_poison.defences.integrity import DatasetManifest
from keras_poison.defences.integrity import ManifestDiff
from keras_poison.defences.callbacks import RestoredWeightsCheck
from keras_poison.defences.layers import ColourCentering
from keras_poison.defences.layers import ImageAugmentation
from keras_poison.defences.losses import BootstrappingCrossentropy
from keras_poison.defences.losses import GeneralizedCrossentropy
from keras_poison.defences.losses import LabelSmoothingCrossentropy
from keras_poison.defences.losses import SymmetricCrossentropy
from keras_poison.defences.losses import bootstrapping_crossentropy
from keras_poison.defences.losses import generalized_crossentropy
from keras_poison.defences.losses import label_smoothing_crossentropy
from keras_poison.defences.losses import symmetric_crossentropy

# Deprecated spellings, kept so that old code and saved models keep working.
from keras_poison.defences.losses import GeneralizedCrossEntropy
from keras_poison.defences.losses import SymmetricCrossEntropy
from keras_poison.defences.losses import generalized_cross_entropy
from keras_poison.defences.losses import symmetric_cross_entropy
from keras_poison.defences.pattern_removal import ClassPatternRemoval
from keras_poison.defences.recipes import SeedDefences
from keras_poison.defences.recipes import ClassPatternDefences
from keras_poison.defences.recipes import class_pattern_defences
from keras_poison.defences.recipes import LabelFlipDefences
from keras_poison.defences.recipes import label_flip_defences
from keras_poison.defences.recipes import seed_defences
from keras_poison.defences.sanitize import Sanitize
