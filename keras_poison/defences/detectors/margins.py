"""Area under the margin: find flipped labels from one training run.

Pleiss, Zhang, Elenberg and Weinberger, "Identifying Mislabeled Data using
the Area Under the Margin Ranking", NeurIPS 2020. The margin of an example
at epoch `t` is its assigned logit minus its largest other logit (eq. 1):

    M_t(x, y) = z_y(x) - max_{j != y} z_j(x)

and its area under the margin is the mean over the epochs, `AUM = 1/T
sum_t M_t` (eq. 2). A network learns the examples whose label agrees with
their image before it memorises the others, so a correctly labelled example
soon has a positive margin while a flipped one is pulled towards its true
class and keeps a negative one, for as long as the network has not
memorised it. The detector needs only the training run the user does
anyway, not the K models of cross-validation, and it reads the examples'
*own* training dynamics, which sees more than an out-of-sample model when
that model is weak.

Two departures from the paper, both for a Keras user's convenience:

* margins are read at the end of every epoch in inference mode, on the
  un-augmented training images (a `model.predict` pass), instead of on each
  mini-batch during the update; this keeps the callback independent of the
  shuffle order and of any augmentation in the input pipeline;
* the paper's threshold (the 99th percentile of the AUM of "threshold
  samples" given a fake extra class, §3) needs a second model with one more
  output. The default here splits the AUM values with a two-component
  Gaussian mixture (scikit-learn), the rule DivideMix (Li et al. 2020) uses
  on per-example losses, and keeps only negative AUMs: on clean data the
  mixture separates easy from hard examples instead (on the clean CIFAR
  subset it put 64% of the examples in the lower component), and a negative
  AUM is what says the model, on average, preferred another class. A fixed
  threshold can be given instead.

For a model that outputs softmax probabilities the margin is computed on
log-probabilities, which differ from the logits by one constant per example
and so give exactly the logit margin.
"""

import time

import keras
import numpy as np
from sklearn.mixture import GaussianMixture

from keras_poison._validation import check_probabilities
from keras_poison._validation import to_class_indices
from keras_poison._validation import validate_int
from keras_poison._validation import validate_model_builder
from keras_poison._validation import validate_number
from keras_poison.defences.detectors.report import DetectionReport

# log(p) of a softmax output that rounded to 0 in float32.
_LOG_FLOOR = np.log(np.finfo(np.float32).tiny)


def margins_of(outputs, labels, from_logits=False):
    """The margin of each example: assigned score minus the largest other (eq. 1).

    Args:
        outputs: float array `(n, num_classes)`, logits or probabilities.
        labels: int array `(n,)`, the assigned labels.
        from_logits: bool, whether `outputs` are logits. Defaults to
            `False` (softmax probabilities, compared as log-probabilities).

    Returns:
        float64 array `(n,)`.

    Example:

    >>> margins_of(np.array([[2.0, 0.5, 1.0]]), np.array([0]), from_logits=True)
    array([1.])
    """
    scores = np.asarray(outputs, np.float64)
    if not from_logits:
        # Logits read as probabilities would floor every negative one to
        # log(tiny): margins near -86, flagged as label noise.
        check_probabilities(
            scores, "outputs", hint=". Pass from_logits=True for a model that outputs logits."
        )
        scores = np.log(np.maximum(scores, 0.0), where=scores > 0, out=np.full_like(scores, _LOG_FLOOR))
    rows = np.arange(len(labels))
    assigned = scores[rows, labels]
    others = scores.copy()
    others[rows, labels] = -np.inf
    return assigned - others.max(axis=1)


@keras.saving.register_keras_serializable(package="keras_poison")
class MarginRecorder(keras.callbacks.Callback):
    """Records every training example's margin after each epoch.

    Add it to the `fit` call that trains on the data under suspicion; after
    training, `area_under_margin` holds each example's AUM and
    `detector_report()` turns it into a `DetectionReport`.

    Args:
        x: the training images, as given to `fit` (NumPy).
        y: their labels as given, sparse or one-hot.
        from_logits: bool, whether the model outputs logits. Defaults to
            `False` (softmax probabilities).
        start_epoch: int >= 0, the first epoch (0-based) whose margins
            count; the first epochs of a model trained from scratch carry
            little information. Defaults to `0`.
        batch_size: int >= 1, batch size of the margin pass.
            Defaults to `256`.

    Example:

    >>> x = np.random.default_rng(0).random((32, 4, 4, 1), dtype="float32")
    >>> y = np.arange(32) % 2
    >>> model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> model.compile("adam", "sparse_categorical_crossentropy")
    >>> recorder = MarginRecorder(x, y)
    >>> _ = model.fit(x, y, epochs=3, verbose=0, callbacks=[recorder])
    >>> len(recorder.margins), recorder.area_under_margin.shape
    (3, (32,))
    >>> recorder.detector_report().detector
    'aum'
    """

    def __init__(self, x, y, from_logits=False, start_epoch=0, batch_size=256):
        super().__init__()
        self.x = x
        self.labels, _ = to_class_indices(y, "y")
        if len(self.x) != len(self.labels):
            raise ValueError(
                f"Expected one label per image. Received: {len(self.x)} images and "
                f"{len(self.labels)} labels"
            )
        self.from_logits = bool(from_logits)
        self.start_epoch = validate_int("start_epoch", start_epoch, 0)
        self.batch_size = validate_int("batch_size", batch_size, 1)
        self.reset()

    def reset(self):
        """Forgets the margins recorded so far."""
        self.margins = []  # one (n,) float32 array per recorded epoch
        self._output_sum = None
        self.seconds = 0.0  # spent recording, so its cost can be read beside training time

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_epoch:
            return
        start = time.perf_counter()
        outputs = np.asarray(self.model.predict(self.x, batch_size=self.batch_size, verbose=0))
        outputs = outputs.reshape(len(self.labels), -1)
        if self.labels.max(initial=0) >= outputs.shape[1]:
            raise ValueError(
                f"Expected the model to output a score per class (labels go up to "
                f"{int(self.labels.max())}). Received: {outputs.shape[1]} outputs"
            )
        self.margins.append(margins_of(outputs, self.labels, self.from_logits).astype(np.float32))
        # Summed outputs give a suggested label steadier than the last epoch's.
        summed = outputs.astype(np.float64)
        self._output_sum = summed if self._output_sum is None else self._output_sum + summed
        self.seconds += time.perf_counter() - start

    def _check_recorded(self):
        if not self.margins:
            raise ValueError(
                "Expected at least one recorded epoch. Received: none (was the "
                f"recorder passed to `fit`, for more than start_epoch={self.start_epoch} epochs?)"
            )

    @property
    def area_under_margin(self):
        """Each example's mean margin over the recorded epochs (eq. 2)."""
        self._check_recorded()
        return np.mean(np.stack(self.margins), axis=0, dtype=np.float64)

    @property
    def suggested_labels(self):
        """The class with the largest summed output over the recorded epochs."""
        self._check_recorded()
        return np.argmax(self._output_sum, axis=1)

    def detector_report(self, threshold="gmm", seed=0):
        """The recorded margins as a `DetectionReport` (see `AUMDetector`)."""
        detector = AUMDetector(threshold=threshold, seed=seed)
        return detector.detect(
            None, self.labels, aum=self.area_under_margin, suggested_labels=self.suggested_labels
        )

    def get_config(self):
        return {
            "from_logits": self.from_logits,
            "start_epoch": self.start_epoch,
            "batch_size": self.batch_size,
        }


class AUMDetector:
    """Flags examples whose area under the margin is low (Pleiss et al. 2020).

    Either give each example's AUM (`detect(x, y, aum=...)`, e.g. from a
    `MarginRecorder` in the user's own training run), or a `build_model`
    function, and the detector trains one fresh model on `(x, y)` with a
    `MarginRecorder`. Scores are `-AUM`, so the most suspicious examples
    rank first. Suggested labels are the classes the model favoured over
    the recorded epochs.

    Known adaptive failure: flips where a model is least sure
    (`EvasiveFlip.least_confident`) have margins near zero by construction
    (the new label was nearly as likely), where the mixture split leaves
    many of them with the hard clean examples. On
    MNIST 5k at 20% flips the F1 fell from 0.94 (random flips) to 0.74
    (0.75 against neighbour-plurality flips), through recall; precision
    stayed above 0.9. `report.with_flagged(report.top(k))` with the
    defender's budget `k` flags by rank instead (docs/benchmarks.md §16).

    Args:
        build_model: `None`, or a function of no arguments returning a
            fresh compiled `keras.Model`. Needed unless `aum` is passed to
            `detect`. Defaults to `None`.
        epochs: int >= 1, training epochs. Defaults to `30`.
        batch_size: int >= 1, training batch size. Defaults to `64`.
        start_epoch: int >= 0, the first epoch (0-based) whose margins
            count. Defaults to `0`.
        threshold: `"gmm"`, or a float: flag examples whose AUM is below
            it. `"gmm"` fits a two-component Gaussian mixture to the AUM
            values and flags the examples with a negative AUM at or below
            the largest AUM that the component with the lower mean claims
            (`report.details["gmm_cut"]`). Defaults to `"gmm"`.
        from_logits: bool, whether the model outputs logits. Defaults to
            `False`.
        seed: int >= 0, seed of the model and of the mixture's fit.
            Defaults to `0`.
        fit_kwargs: dict or `None`, extra arguments to `model.fit`.
            Defaults to `None`.
        verbose: int, Keras `fit` verbosity. Defaults to `0`.

    Example:

    >>> aum = np.array([2.1, 1.8, -1.5, 2.4, 1.9, -0.9, 2.2, 2.0])
    >>> labels = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    >>> report = AUMDetector(threshold=0.0).detect(None, labels, aum=aum)
    >>> report.flagged_indices.tolist()
    [2, 5]
    """

    name = "aum"

    def __init__(
        self,
        build_model=None,
        epochs=30,
        batch_size=64,
        start_epoch=0,
        threshold="gmm",
        from_logits=False,
        seed=0,
        fit_kwargs=None,
        verbose=0,
    ):
        self.build_model = validate_model_builder(build_model)
        self.epochs = validate_int("epochs", epochs, 1)
        self.batch_size = validate_int("batch_size", batch_size, 1)
        self.start_epoch = validate_int("start_epoch", start_epoch, 0)
        if self.start_epoch >= self.epochs:
            raise ValueError(
                f"Expected `start_epoch` < `epochs`={self.epochs}, so at least one "
                f"epoch is recorded. Received: start_epoch={self.start_epoch}"
            )
        if not (isinstance(threshold, str) and threshold == "gmm"):
            if isinstance(threshold, str):
                raise ValueError(
                    f"Expected `threshold` to be 'gmm' or a number. Received: threshold={threshold!r}"
                )
            threshold = validate_number("threshold", threshold)
        self.threshold = threshold
        self.from_logits = bool(from_logits)
        self.seed = validate_int("seed", seed, 0)
        self.fit_kwargs = dict(fit_kwargs or {})
        self.verbose = verbose

    def record(self, x, y):
        """Trains a fresh model on `(x, y)`; returns its `MarginRecorder`."""
        if self.build_model is None:
            raise ValueError(
                "Expected `build_model` to train a model, or `aum=` given to "
                "`detect`. Received: build_model=None"
            )
        recorder = MarginRecorder(
            x, y, from_logits=self.from_logits, start_epoch=self.start_epoch
        )
        keras.utils.set_random_seed(self.seed)
        model = self.build_model()
        fit_kwargs = dict(self.fit_kwargs)
        callbacks = list(fit_kwargs.pop("callbacks", [])) + [recorder]
        model.fit(
            x,
            y,
            epochs=self.epochs,
            batch_size=self.batch_size,
            callbacks=callbacks,
            verbose=self.verbose,
            **fit_kwargs,
        )
        return recorder

    def detect(self, x, y, aum=None, suggested_labels=None):
        """Finds the examples of `(x, y)` with a low area under the margin.

        Args:
            x: images `(n, ...)`; ignored when `aum` is given.
            y: labels, sparse `(n,)` or one-hot `(n, num_classes)`.
            aum: `None`, or float array `(n,)` of areas under the margin.
            suggested_labels: `None`, or int array `(n,)`, labels to
                suggest (only with `aum`).

        Returns:
            A `DetectionReport`.
        """
        labels, _ = to_class_indices(y, "y")
        if aum is None:
            recorder = self.record(x, y)
            aum, suggested_labels = recorder.area_under_margin, recorder.suggested_labels
        aum = np.asarray(aum, np.float64)
        if aum.shape != labels.shape:
            raise ValueError(
                f"Expected `aum` of shape {labels.shape}, one value per label. "
                f"Received: aum.shape={aum.shape}"
            )
        if not np.all(np.isfinite(aum)):
            raise ValueError("Expected finite `aum`. Received: NaN or inf values")
        details = self.get_config()
        if self.threshold == "gmm":
            flagged = _lower_component(aum, self.seed) & (aum < 0)
            # The AUM below which (inclusive) examples were flagged, after both rules.
            details["gmm_cut"] = float(aum[flagged].max()) if flagged.any() else None
        else:
            flagged = aum < self.threshold
        return DetectionReport(
            -aum,
            flagged,
            suggested_labels=suggested_labels,
            given_labels=labels,
            detector=self.name,
            details=details,
        )

    def get_config(self):
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "start_epoch": self.start_epoch,
            "threshold": self.threshold,
            "from_logits": self.from_logits,
            "seed": self.seed,
        }


def _lower_component(values, seed):
    """Flags every value at or below the largest one the lower-mean of two Gaussians claims."""
    if len(values) < 2 or np.ptp(values) == 0:
        return np.zeros(len(values), bool)
    mixture = GaussianMixture(n_components=2, random_state=seed).fit(values[:, None])
    low = int(np.argmin(mixture.means_[:, 0]))
    claimed = mixture.predict_proba(values[:, None])[:, low] > 0.5
    # A Gaussian with a wide spread also claims the far tails beyond a narrow
    # one; only values below the upper component's mean count as claimed by
    # the lower one, and everything at or below the largest of those is
    # flagged, so a lower AUM is never less suspicious than a higher one.
    claimed &= values < mixture.means_[:, 0].max()
    if not claimed.any():
        return claimed
    return values <= values[claimed].max()
