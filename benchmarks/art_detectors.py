"""ART 1.20's poison detectors on a keras-poison model, side by side with ours (issue 5).

`art_detect(model, x, y_sparse, num_classes, expected_poison_rate)` runs the
Adversarial Robustness Toolbox's `ActivationDefence` (Chen et al. 2018) and
`SpectralSignatureDefense` (Tran et al. 2018) on the same Keras 3 model and
the same data as `ActivationClusteringDetector` and
`SpectralSignatureDetector`, and returns what each flags and how long it
took, so a benchmark can print both in one run.

ART is NEVER a dependency of keras-poison: it is not in setup.cfg, and it is
installed in its own virtual environment for this benchmark only. This module
imports only in that environment. Create it once, from anywhere:

    python3 -m venv /work/venv-art
    /work/venv-art/bin/pip install --upgrade pip
    /work/venv-art/bin/pip install adversarial-robustness-toolbox==1.20.1 -e /work/main
    # Only while keras-poison's setup.cfg does not declare it yet:
    /work/venv-art/bin/pip install cleanlab

(`-e /work/main` brings TensorFlow 2.21, Keras 3, scikit-learn and the rest;
with it ART 1.20.1 imports cleanly, and only warns that PyTorch is missing.)

Smoke test (tiny model, random data, about a minute on 2 cores):

    /work/venv-art/bin/python benchmarks/art_detectors.py --smoke

Which ART wrapper, and what it reads
------------------------------------
Both ART defences need a neural-network classifier with `nb_classes`,
`layer_names` and `get_activations(x, layer=len(layer_names) - 1, ...)`: they
read the activations of the *last entry of `layer_names`*.

* `TensorFlowV2Classifier` does not work on functional models:
  `get_activations` raises "not supported for non-Sequential models". (On a
  Sequential model its `layer_names` lists every layer, output layer
  included, so the defences would read the softmax output, not a hidden
  layer.)
* `KerasClassifier` works with Keras 3 functional models unmodified (in ART
  1.20 `tf.keras` is Keras 3). Its `layer_names` is `model.layers[:-1]`
  without the `InputLayer`, but `get_activations(int)` indexes
  `model.layers`, which for a functional model starts with the `InputLayer`.
  The two shifts add up: the defences read `model.layers[len(model.layers) - 3]`
  on a functional model, `model.layers[-2]` on a Sequential one. For the
  library's models (`..., Dense "logits", Activation "probabilities"`) that is
  the layer feeding `"logits"`: exactly the penultimate representation our
  detectors read. So no adapter is needed; `art_detect` checks, before
  running anything, that the layer ART will read outputs the very tensor that
  the model's last weighted layer takes as input, and refuses a model where
  it does not (e.g. a functional model whose last Dense has the softmax
  built in), rather than silently comparing different features.

Settings (ART's defaults, which are the papers' where the papers say)
---------------------------------------------------------------------
* `ActivationDefence`: `nb_clusters=2`, `nb_dims=10`, `reduce="PCA"` (ART's
  default; the paper uses ICA, and so does our detector by default),
  `cluster_analysis="smaller"`: in EVERY class the smaller of the two k-means
  clusters is called poisoned, whatever its size (our detector flags it only
  when it holds at most 35% of the class). k-means has no seed in ART; we
  seed NumPy's global generator, which scikit-learn then uses.
* `SpectralSignatureDefense`: `eps_multiplier=1.5`,
  `expected_pp_poison=expected_poison_rate`; per class it flags the scores at
  or above the `1 - 1.5 * eps` quantile. Its score is `|v . R_i|`, the
  projection of the *uncentred* features on the top singular vector `v` of
  the centred ones; Tran et al.'s Algorithm 1 (and our detector) projects the
  centred features, `((R_i - mean) . v)^2`, which can rank differently when
  `v . mean != 0` (ReLU features have a non-zero mean).
* ART's convention: `is_clean_lst[i] == 1` means clean, `0` means poisoned,
  so `flagged = is_clean == 0`.
* `KerasClassifier.get_activations` ignores the `batch_size` the defences
  pass and calls `predict` with Keras's default batch of 32. Each defence's
  `seconds` includes its own feature pass, as our detectors' timings do.

What the smoke run shows (ART 1.20.1, Keras 3.15.1, 2 CPU cores, warm run;
1,000 random 8x8x3 class-blob images, 100 labels flipped by RandomFlip(0.1)):

    detector (warm run)                              flagged precision  recall  seconds
    ART activation_defence [dense_dropout]               142     0.627   0.890     0.65
    ART spectral_signature_defense [dense_dropout]       154     0.045   0.070     0.72
    ours SpectralSignatureDetector                       152     0.599   0.910     0.38
    ours ActivationClusteringDetector (ica)               11     1.000   0.110     0.88
    ours ActivationClusteringDetector (pca)              102     0.961   0.980     0.45

ART's spectral defence misses because of the uncentred projection above:
with `spectral_signature_scores` patched to project the centred features
(and nothing else changed) it flags 154 at precision 0.591, recall 0.910,
next to our 0.599 / 0.910 (152 flagged: `round(1.5 eps n_c)` against ART's
quantile). So both read the same features; only the score differs.
"""

import argparse
import contextlib
import io
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

try:
    import art  # noqa: E402
    from art.defences.detector.poison import ActivationDefence  # noqa: E402
    from art.defences.detector.poison import SpectralSignatureDefense  # noqa: E402
    from art.estimators.classification import KerasClassifier  # noqa: E402
except ImportError as error:  # pragma: no cover - only outside the ART venv
    raise ImportError(
        "benchmarks/art_detectors.py needs ART, which keras-poison never depends on. "
        "Run it with /work/venv-art/bin/python (see this module's docstring to create "
        f"that venv). Original error: {error}"
    ) from None

ART_VERSION = art.__version__


def art_classifier(model, num_classes):
    """Wraps `model` in ART's unmodified `KerasClassifier` and checks what it reads.

    Returns:
        `(classifier, layer_name)`, `layer_name` being the layer whose output
        both ART defences read (`model.layers[len(layer_names) - 1]`).

    Raises:
        ValueError: if the model's class count is not `num_classes`, or if
            that layer's output is not the input of the model's last layer
            with weights (the penultimate representation our detectors read).
    """
    classifier = KerasClassifier(model, use_logits=False)
    if classifier.nb_classes != num_classes:
        raise ValueError(
            f"Expected a model with {num_classes} outputs. Received: {classifier.nb_classes}"
        )
    # Both defences call get_activations(x, layer=len(layer_names) - 1), and
    # KerasClassifier.get_activations resolves an int through model.layers.
    read = model.layers[len(classifier.layer_names) - 1]
    last_weighted = [layer for layer in model.layers if layer.weights][-1]
    if read.output is not last_weighted.input:
        raise ValueError(
            f"ART's KerasClassifier would read the output of layer {read.name!r}, which is "
            f"not the input of the last weighted layer {last_weighted.name!r} that "
            "keras-poison's detectors read. Give the model a separate output activation "
            "layer after its last Dense (as keras_poison.models do)."
        )
    return classifier, read.name


@contextlib.contextmanager
def _quiet_stdout():
    # KerasClassifier.get_activations calls model.predict without verbose=0:
    # keep its progress bars out of the benchmark's output.
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def art_detect(model, x, y_sparse, num_classes, expected_poison_rate, batch_size=256, seed=0):
    """Runs ART's `ActivationDefence` and `SpectralSignatureDefense` on `(x, y)`.

    Args:
        model: the trained Keras 3 model (functional or Sequential) whose
            penultimate features both defences read.
        x: float array `(n, ...)`, the images the model takes.
        y_sparse: int array `(n,)`, the (possibly poisoned) training labels.
        num_classes: int, number of classes of the model.
        expected_poison_rate: float in (0, 1), ART's `expected_pp_poison`.
        batch_size: int, passed to `SpectralSignatureDefense(batch_size=)`
            (ART's KerasClassifier ignores it when reading activations).
        seed: int, seeds NumPy's global generator before each defence, which
            ART's unseeded k-means draws from.

    Returns:
        `{"activation_defence": {...}, "spectral_signature_defense": {...}}`,
        each `{"flagged": bool (n,), "seconds": float, "settings": dict}`;
        `flagged[i]` is True where ART's `is_clean_lst[i] == 0` (poisoned).
    """
    x = np.asarray(x, np.float32)
    labels = np.asarray(y_sparse).astype(np.int64).reshape(-1)
    if len(labels) != len(x):
        raise ValueError(f"Expected one label per image. Received: {len(x)} and {len(labels)}")
    # ART segments by argmax of one-hot labels (it also accepts sparse ones).
    y_one_hot = keras.utils.to_categorical(labels, num_classes).astype(np.float32)
    classifier, layer_name = art_classifier(model, num_classes)
    common = {
        "art_version": ART_VERSION,
        "wrapper": "art.estimators.classification.KerasClassifier (unmodified)",
        "layer_read": layer_name,
        "numpy_seed": seed,
    }
    results = {}

    ac_settings = {"nb_clusters": 2, "nb_dims": 10, "reduce": "PCA", "cluster_analysis": "smaller"}
    np.random.seed(seed)
    start = time.perf_counter()
    with _quiet_stdout():
        defence = ActivationDefence(classifier, x, y_one_hot)
        _, is_clean = defence.detect_poison(**ac_settings)
    seconds = time.perf_counter() - start
    results["activation_defence"] = {
        "flagged": _flagged(is_clean, len(x)),
        "seconds": seconds,
        "settings": {**common, **ac_settings, "clustering_method": defence.clustering_method},
    }

    ss_settings = {
        "eps_multiplier": 1.5,
        "expected_pp_poison": float(expected_poison_rate),
        "batch_size": int(batch_size),
    }
    np.random.seed(seed)
    start = time.perf_counter()
    with _quiet_stdout():
        defence = SpectralSignatureDefense(classifier, x, y_one_hot, **ss_settings)
        _, is_clean = defence.detect_poison()
    seconds = time.perf_counter() - start
    results["spectral_signature_defense"] = {
        "flagged": _flagged(is_clean, len(x)),
        "seconds": seconds,
        "settings": {**common, **ss_settings},
    }
    return results


def _flagged(is_clean, n):
    # ART: is_clean_lst[i] == 1 -> clean, 0 -> poisoned.
    is_clean = np.asarray(is_clean).astype(np.int64).reshape(-1)
    if is_clean.shape != (n,) or not np.isin(is_clean, (0, 1)).all():
        raise ValueError(f"Expected ART's is_clean_lst to be n={n} zeros and ones")
    return is_clean == 0


def _precision_recall(flagged, truth):
    hits = int(np.sum(flagged & truth))
    precision = hits / flagged.sum() if flagged.sum() else float("nan")
    recall = hits / truth.sum() if truth.sum() else float("nan")
    return precision, recall


def smoke(num_examples=1000, num_classes=10, rate=0.1, epochs=8, seed=0):
    """Tiny `vgg_like` on random class-blob images with 10% flipped labels."""
    from keras_poison import RandomFlip
    from keras_poison import models

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    shape = (8, 8, 3)
    # Random images around one random prototype per class, in [0, 1].
    prototypes = rng.random((num_classes,) + shape)
    y_clean = np.arange(num_examples) % num_classes
    x = np.clip(prototypes[y_clean] + 0.25 * rng.normal(size=(num_examples,) + shape), 0, 1)
    x = x.astype(np.float32)
    x, y, mask = RandomFlip(rate, num_classes=num_classes, seed=seed).poison(x, y_clean)
    y = np.asarray(y).astype(np.int64)
    mask = np.asarray(mask, bool)

    model = models.vgg_like(input_shape=shape, num_classes=num_classes, seed=seed)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    accuracy = float(np.mean(np.argmax(model.predict(x, verbose=0), 1) == y))
    print(
        f"ART {ART_VERSION}, Keras {keras.__version__}; {num_examples} examples "
        f"{shape}, {int(mask.sum())} labels flipped; train accuracy on given labels "
        f"{accuracy:.3f}"
    )

    # Run everything twice and time the second, warm run: the first call of
    # whichever detector goes first pays TensorFlow's one-off start-up.
    for _ in range(2):
        rows = _compare(model, x, y, num_classes, rate, seed)
    header = ("detector (warm run)", "flagged", "precision", "recall", "seconds")
    print("{:48s} {:>7s} {:>9s} {:>7s} {:>8s}".format(*header))
    for name, flagged, seconds in rows:
        precision, recall = _precision_recall(flagged, mask)
        print(
            f"{name:48s} {int(flagged.sum()):7d} {precision:9.3f} {recall:7.3f} {seconds:8.2f}"
        )


def _compare(model, x, y, num_classes, rate, seed):
    from keras_poison import ActivationClusteringDetector
    from keras_poison import SpectralSignatureDetector

    rows = []
    art_results = art_detect(model, x, y, num_classes, rate, seed=seed)
    for name, result in art_results.items():
        label = f"ART {name} [{result['settings']['layer_read']}]"
        rows.append((label, result["flagged"], result["seconds"]))
    ours = {
        "ours SpectralSignatureDetector": SpectralSignatureDetector(
            model, expected_poison_rate=rate, removal_factor=1.5
        ),
        "ours ActivationClusteringDetector (ica)": ActivationClusteringDetector(model),
        # ART reduces with PCA by default: the same reduction, for a like-for-like row.
        "ours ActivationClusteringDetector (pca)": ActivationClusteringDetector(
            model, reduction="pca"
        ),
    }
    for name, detector in ours.items():
        start = time.perf_counter()
        report = detector.detect(x, y)
        rows.append((name, report.flagged, time.perf_counter() - start))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="run the tiny end-to-end check")
    args = parser.parse_args(argv)
    if not args.smoke:
        parser.error("only --smoke runs from the command line; import art_detect otherwise")
    import tensorflow as tf

    # ART's KerasClassifier builds a new sub-model at every get_activations
    # call; hide TensorFlow's retracing warnings about it.
    tf.get_logger().setLevel("ERROR")
    smoke()


if __name__ == "__main__":
    main()
