"""Detectors: find the poisoned examples of a training set, one report type."""

from keras_poison.defences.detectors.activation_clustering import ActivationClusteringDetector
from keras_poison.defences.detectors.class_pattern import ClassPatternDetector
from keras_poison.defences.detectors.features import extract_features
from keras_poison.defences.detectors.features import feature_extractor
from keras_poison.defences.detectors.inspection import plot_confusion_matrix
from keras_poison.defences.detectors.inspection import plot_suspicious
from keras_poison.defences.detectors.knn import KNNDetector
from keras_poison.defences.detectors.label_issues import LabelIssueDetector
from keras_poison.defences.detectors.margins import AUMDetector
from keras_poison.defences.detectors.margins import MarginRecorder
from keras_poison.defences.detectors.report import DetectionMetrics
from keras_poison.defences.detectors.report import DetectionReport
from keras_poison.defences.detectors.report import consensus
from keras_poison.defences.detectors.report import rank_average
from keras_poison.defences.detectors.spectral import SpectralSignatureDetector
