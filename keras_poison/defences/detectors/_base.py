"""What the feature-space detectors share: features, labels and checks."""

import functools

import numpy as np
from threadpoolctl import threadpool_limits

from keras_poison._validation import to_class_indices
from keras_poison.defences.detectors.features import extract_features


def one_thread_per_class_problem(detect):
    """Runs `detect` with one BLAS / OpenMP thread.

    The per-class problems (an SVD, PCA or k-means of a few hundred rows)
    are so small that starting threads costs more than the work: on 2 busy
    cores, activation clustering of 4,660 CIFAR features took 16 s with the
    default thread pools and 0.6 s with one thread (spectral: 3.5 s, 0.3 s).
    """

    @functools.wraps(detect)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1):
            return detect(*args, **kwargs)

    return wrapper


class FeatureSpaceDetector:
    """Base of the detectors that read a model's penultimate features.

    Args:
        model: a functional or Sequential `keras.Model` trained on the data
            under suspicion, or `None` when `features=` are always passed
            to `detect`.
        layer: which layer's output to read (see `feature_extractor`);
            `None` reads the penultimate representation.
        batch_size: int, batch size of the feature pass.
    """

    name = "feature_space"

    def __init__(self, model=None, layer=None, batch_size=256):
        self.model = model
        self.layer = layer
        self.batch_size = batch_size

    def features_and_labels(self, x, y, features=None):
        """`(features (n, d) float32, labels (n,) int64)`, checked."""
        labels, _ = to_class_indices(y, "y")
        if features is None:
            if self.model is None:
                raise ValueError(
                    f"Expected `features=` when {type(self).__name__} has no `model`. "
                    "Received: model=None and features=None"
                )
            if x is None or len(x) != len(labels):
                raise ValueError(
                    "Expected `x` and `y` with one label per image. Received: "
                    f"{None if x is None else len(x)} images and {len(labels)} labels"
                )
            features = extract_features(self.model, x, self.layer, self.batch_size)
        features = np.asarray(features, np.float32)
        if features.ndim < 2 or len(features) != len(labels):
            raise ValueError(
                f"Expected `features` of shape ({len(labels)}, d), one row per label. "
                f"Received: features.shape={features.shape}"
            )
        features = features.reshape(len(features), -1)
        if not np.all(np.isfinite(features)):
            raise ValueError("Expected finite `features`. Received: NaN or inf values")
        return features, labels

    def get_config(self):
        layer = self.layer if self.layer is None or isinstance(self.layer, (str, int)) else self.layer.name
        return {"layer": layer, "batch_size": self.batch_size}
