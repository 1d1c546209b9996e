"""keras-poison: data-poisoning attacks and defences for Keras image classifiers.

The public API is flat: `from keras_poison import RandomFlip`.

Importing the package registers every serializable layer, loss, callback and
attack with Keras (`keras.saving.register_keras_serializable`), so a `.keras`
file that uses them loads with `keras.saving.load_model(path)` and no
`custom_objects`, in any process that has run `import keras_poison` first.
Keras does not import third-party modules named in a saved file, so that
import is needed.
"""

from keras_poison import datasets
from keras_poison import defences
from keras_poison import experiments
from keras_poison import metrics
from keras_poison import models
from keras_poison import streams
from keras_poison.attacks import ClassConvolution
from keras_poison.attacks import ClassPatternNoise
from keras_poison.attacks import DirectGradientPoison
from keras_poison.attacks import EvasiveFlip
from keras_poison.attacks import InjectPoisons
from keras_poison.attacks import OnePixelShortcut
from keras_poison.attacks import PoisonSet
from keras_poison.attacks import PoisoningAttack
from keras_poison.attacks import RandomFlip
from keras_poison.attacks import SeparableNoise
from keras_poison.attacks import SmoothClassPattern
from keras_poison.attacks import SupplanterPoison
from keras_poison.attacks import TargetedFlip
from keras_poison.attacks import VictimPoison
from keras_poison.attacks import confused_class_pairs
from keras_poison.attacks import logit_function
from keras_poison.attacks import relabel_seeds
from keras_poison.callbacks import ClassOrientedMetrics
from keras_poison.defences import ActivationClusteringDetector
from keras_poison.defences import AveragedWeights
from keras_poison.defences import BaggingEnsemble
from keras_poison.defences import BootstrappingCrossentropy
from keras_poison.defences import ClassPatternDetector
from keras_poison.defences import ClassPatternRemoval
from keras_poison.defences import ClassPatternSwap
from keras_poison.defences import ColourCentering
from keras_poison.defences import DatasetManifest
from keras_poison.defences import DetectionMetrics
from keras_poison.defences import DetectionReport
from keras_poison.defences import GeneralizedCrossentropy
from keras_poison.defences import ImageAugmentation
from keras_poison.defences import KNNDetector
from keras_poison.defences import LabelIssueDetector
from keras_poison.defences import AUMDetector
from keras_poison.defences import MarginRecorder
from keras_poison.defences import LabelSmoothingCrossentropy
from keras_poison.defences import ManifestDiff
from keras_poison.defences import PartitionEnsemble
from keras_poison.defences import PoisonMonitor
from keras_poison.defences import RestoredWeightsCheck
from keras_poison.defences import Sanitize
from keras_poison.defences import SharpeningFrequencyFilter
from keras_poison.defences import ShortcutSqueezing
from keras_poison.defences import SeedDefences
from keras_poison.defences import ClassPatternDefences
from keras_poison.defences import class_pattern_defences
from keras_poison.defences import ClassPatternSwapDefences
from keras_poison.defences import class_pattern_swap_defences
from keras_poison.defences import LabelFlipDefences
from keras_poison.defences import label_flip_defences
from keras_poison.defences import SpectralSignatureDetector
from keras_poison.defences import SymmetricCrossentropy
from keras_poison.defences import seed_defences
from keras_poison.defences import averaged_weights
from keras_poison.defences import certified_accuracy
from keras_poison.defences import consensus
from keras_poison.defences import rank_average
from keras_poison.defences import plot_confusion_matrix
from keras_poison.defences import plot_suspicious
from keras_poison.fingerprints import content_keys
from keras_poison.callbacks import PacedPoisons
from keras_poison.callbacks import RecraftPoisons
from keras_poison.metrics import CTTResult
from keras_poison.metrics import accuracy
from keras_poison.metrics import cft_rate
from keras_poison.metrics import confusion_matrix
from keras_poison.metrics import ctt_rate
from keras_poison.metrics import macro_f1

# Deprecated spellings of the losses above (they warn when constructed).
from keras_poison.defences import GeneralizedCrossEntropy
from keras_poison.defences import SymmetricCrossEntropy

__version__ = "0.1.0"
