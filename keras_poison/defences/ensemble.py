"""Voting ensembles against poisoning: partition aggregation and bagging.

The class-oriented paper (§6) suggests "combinational models such as
bagging, where the classification results are no longer dependent on a
single model". Two such models, both `keras.Model`s that predict, evaluate
and save to `.keras` like any other:

* `PartitionEnsemble`: Deep Partition Aggregation (Levine & Feizi, ICLR
  2021). `k` members, each trained on its own part of the training set; the
  part of an example is a fingerprint of its image mod `k`. A poisoned
  example (inserted, deleted or relabelled) lands in one part and so can
  change one member's vote; the vote margin says how many poisons the
  prediction provably survives (`certify`).
* `BaggingEnsemble`: `k` members trained on bootstrap samples, plurality
  vote (Breiman 1996). No certificate.

`certified_accuracy` turns certificates into the usual curve: the share of
test examples predicted correctly with a certificate of at least `r`
poisons, for each `r`.
"""

import abc
import inspect
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_poison._validation import to_class_indices
from keras_poison._validation import validate_int
from keras_poison._validation import validate_number
from keras_poison.fingerprints import content_keys
from keras_poison.fingerprints import content_keys_tensor

__all__ = [
    "BaggingEnsemble",
    "PartitionEnsemble",
    "certified_accuracy",
    "certify_votes",
    "member_error",
    "vote_accuracy",
]


# ----------------------------------------------------------------------
# Votes and certificates (NumPy, no model needed).


def certify_votes(counts):
    """The plurality vote and its certificate, from vote counts.

    The prediction is the class with the most votes, ties going to the
    smaller class index (as `np.argmax`). Its certificate is the number of
    members whose vote an adversary may change while the prediction
    provably stays the same (Levine & Feizi 2021, Theorem 1):

    `radius = floor((n_top - n_second - [second < top]) / 2)`

    with `n_top` the votes of the predicted class `top` and `n_second` those
    of the runner-up `second` (the most-voted other class, ties again to
    the smaller index). Each changed vote takes one from `top` and may give
    it to `second`, closing the gap by two; a tie goes to the smaller index,
    hence the correction when `second` comes first.

    Args:
        counts: int array `(n, num_classes)` of non-negative vote counts,
            `num_classes >= 2`.

    Returns:
        `(predictions, radius)`, two int64 arrays of shape `(n,)`.

    Example:

    >>> predictions, radius = certify_votes([[5, 2, 3], [3, 3, 4], [4, 4, 2]])
    >>> predictions.tolist(), radius.tolist()
    ([0, 2, 0], [1, 0, 0])
    """
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[1] < 2:
        raise ValueError(
            "Expected `counts` of shape (n, num_classes) with num_classes >= 2. "
            f"Received: counts.shape={counts.shape}"
        )
    if not np.issubdtype(counts.dtype, np.integer):
        if not np.issubdtype(counts.dtype, np.number) or np.any(
            counts != np.round(counts)
        ):
            raise TypeError(
                "Expected `counts` to hold integer vote counts. "
                f"Received: counts.dtype={counts.dtype}"
            )
    counts = counts.astype(np.int64)
    if counts.size and counts.min() < 0:
        raise ValueError(
            "Expected `counts` >= 0 (vote counts). "
            f"Received: a count of {int(counts.min())}"
        )
    rows = np.arange(len(counts))
    top = np.argmax(counts, axis=1)
    others = counts.copy()
    others[rows, top] = -1
    second = np.argmax(others, axis=1)
    gap = counts[rows, top] - counts[rows, second] - (second < top)
    return top.astype(np.int64), (gap // 2).astype(np.int64)


def certified_accuracy(y_true, predictions, radius, max_poisons=None):
    """Certified accuracy against the number of poisons.

    Entry `r` is the share of examples that are predicted correctly *and*
    certified for at least `r` poisons (`radius >= r`): a lower bound on the
    accuracy any attacker with `r` poisoned training examples can leave.
    Entry 0 is the plain accuracy; the curve never rises.

    Args:
        y_true: true labels, sparse `(n,)` / `(n, 1)` or one-hot.
        predictions: int array `(n,)`, the predicted classes.
        radius: int array `(n,)`, the certificates (`certify`).
        max_poisons: int >= 0, the last `r` of the curve, or `None` for one
            past the largest radius (so the curve ends at 0). Defaults to
            `None`.

    Returns:
        A float64 array of shape `(max_poisons + 1,)`.

    Example:

    >>> certified_accuracy([0, 1, 1, 2], [0, 1, 0, 2], [3, 0, 1, 1]).tolist()
    [0.75, 0.5, 0.25, 0.25, 0.0]
    """
    labels, _ = to_class_indices(y_true, "y_true")
    predictions, _ = to_class_indices(predictions, "predictions")
    radius = np.asarray(radius)
    if radius.ndim != 1 or not np.issubdtype(radius.dtype, np.integer):
        raise TypeError(
            "Expected `radius` to be a 1-D int array of certificates. "
            f"Received: radius.shape={radius.shape}, radius.dtype={radius.dtype}"
        )
    if not len(labels) == len(predictions) == len(radius):
        raise ValueError(
            "Expected `y_true`, `predictions` and `radius` of the same length. "
            f"Received: lengths {len(labels)}, {len(predictions)} and {len(radius)}"
        )
    if len(labels) == 0:
        raise ValueError("Expected at least one example. Received: empty `y_true`")
    if max_poisons is None:
        max_poisons = int(max(radius.max(), -1)) + 1
    max_poisons = validate_int("max_poisons", max_poisons, 0)
    correct = predictions == labels
    r = np.arange(max_poisons + 1)
    return np.mean(correct[None, :] & (radius[None, :] >= r[:, None]), axis=1)


@keras.saving.register_keras_serializable(package="keras_poison")
def member_error(y_true, y_pred):
    """The share of members that voted against the label: an ensemble's loss.

    `y_pred` is an ensemble's output, the share of members voting for each
    class; the loss of an example is `1 - y_pred[label]`, so its mean over a
    data set is the members' mean error rate. Labels sparse or one-hot,
    told apart by their shape (one-hot: `(batch, num_classes)`).

    Args:
        y_true: labels, sparse `(batch,)` / `(batch, 1)` or one-hot
            `(batch, num_classes)`.
        y_pred: vote shares `(batch, num_classes)`.

    Returns:
        A float tensor `(batch,)`.
    """
    y_pred = keras.ops.convert_to_tensor(y_pred)
    target = keras.ops.one_hot(_labels(y_true, y_pred), y_pred.shape[-1], dtype=y_pred.dtype)
    return 1.0 - keras.ops.sum(target * y_pred, axis=-1)


@keras.saving.register_keras_serializable(package="keras_poison")
def vote_accuracy(y_true, y_pred):
    """1 where the vote (ties to the smaller class) is the label, else 0.

    The ensembles' `"accuracy"` metric. Unlike Keras' `"accuracy"`, which
    settles on sparse or one-hot labels at the first batch it sees, it reads
    the labels' format from their shape at every call, as `member_error`.

    Args:
        y_true: labels, sparse `(batch,)` / `(batch, 1)` or one-hot
            `(batch, num_classes)`.
        y_pred: vote shares `(batch, num_classes)`.

    Returns:
        A float tensor `(batch,)`.
    """
    y_pred = keras.ops.convert_to_tensor(y_pred)
    vote = keras.ops.cast(keras.ops.argmax(y_pred, axis=-1), "int32")
    return keras.ops.cast(keras.ops.equal(vote, _labels(y_true, y_pred)), y_pred.dtype)


def _labels(y_true, y_pred):
    """int32 class indices `(batch,)` of sparse or one-hot `y_true`."""
    y_true = keras.ops.convert_to_tensor(y_true)
    num_classes = y_pred.shape[-1]

    def sparse():
        return keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")

    def one_hot():
        rows = keras.ops.reshape(y_true, (-1, num_classes))
        return keras.ops.cast(keras.ops.argmax(rows, axis=-1), "int32")

    shape = y_true.shape
    rank = shape.rank if hasattr(shape, "rank") else len(shape)
    if rank is not None:
        one_hot_shape = rank == 2 and y_true.shape[-1] == num_classes
        return one_hot() if one_hot_shape else sparse()
    # Unknown rank (a retraced function): one label per row is sparse;
    # `num_classes` values per row (num_classes >= 2) is one-hot.
    is_sparse = keras.ops.equal(keras.ops.size(y_true), keras.ops.shape(y_pred)[0])
    return keras.ops.cond(is_sparse, sparse, one_hot)


# ----------------------------------------------------------------------
# The shared base: members, vote, fit loop, saving.


class _VotingEnsemble(keras.Model, metaclass=abc.ABCMeta):
    """`k` members built by `build_model`, trained on subsets, plurality vote.

    Subclasses choose each member's training subset (`_subsets`)."""

    _kind = "ensemble"

    def __init__(
        self,
        build_model=None,
        k=None,
        num_classes=None,
        *,
        seed=0,
        members=None,
        trained=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(
                f"Expected `k` (the number of members) to be an int >= 2. Received: k={k!r}"
            )
        if k < 2:
            raise ValueError(
                "Expected `k` >= 2: a vote needs at least two members. "
                f"Received: k={k}"
            )
        self.k = int(k)
        self.num_classes = validate_int("num_classes", num_classes, 2)
        if seed is not None:
            seed = validate_int("seed", seed, 0)
        self.seed = seed
        if members is None:
            if build_model is None or not callable(build_model):
                raise TypeError(
                    "Expected `build_model` to be a function returning a compiled "
                    f"keras.Model. Received: build_model={build_model!r}"
                )
            members = [_call_builder(build_model, index) for index in range(self.k)]
            source = "build_model"
        else:
            if build_model is not None:
                raise TypeError(
                    "Pass `build_model` or `members`, not both. Received: "
                    f"build_model={build_model!r} and {len(members)} members"
                )
            members = list(members)
            if len(members) != self.k:
                raise ValueError(
                    f"Expected `members` to hold k={self.k} models. "
                    f"Received: {len(members)} models"
                )
            source = "members"
        input_shape = None
        for index, member in enumerate(members):
            _check_member(member, index, self.num_classes, source)
            shape = tuple(member.input_shape)
            if input_shape is None:
                input_shape = shape
            elif shape[1:] != input_shape[1:]:
                raise ValueError(
                    f"Expected every member to take inputs of shape {input_shape}. "
                    f"Received: member {index} of `{source}` takes {shape}"
                )
        self.build_model = build_model
        self.members = members
        # A variable, not a config entry: it is saved and loaded with the
        # weights, so a rebuild without them (`from_config`, `clone_model`)
        # has fresh members and is untrained, while a loaded `.keras` file
        # keeps the flag its members were saved with.
        self._trained_flag = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False, name="trained"
        )
        self.trained = trained
        self._member_input_shape = input_shape
        self.built = True
        self.compile()

    @property
    def trained(self):
        """Whether the members were trained (by `fit`, or as passed or loaded)."""
        return bool(keras.ops.convert_to_numpy(self._trained_flag))

    @trained.setter
    def trained(self, value):
        self._trained_flag.assign(1 if value else 0)

    # -- Keras model -----------------------------------------------------

    def call(self, inputs):
        """The share of members voting for each class, `(batch, num_classes)`."""
        import tensorflow as tf  # a graph assertion (TF backend)

        votes = None
        for index, member in enumerate(self.members):
            outputs = member(inputs, training=False)
            # argmax reads a NaN row as class 0: a diverged member would vote
            # (and be certified) for class 0 on every image.
            finite = tf.debugging.Assert(
                tf.reduce_all(tf.math.is_finite(outputs)),
                [f"{type(self).__name__}: member {index} gave non-finite outputs (NaN "
                 "or inf), so its vote is undefined. It diverged in training: retrain "
                 "it, with a lower learning rate for instance."],
            )
            with tf.control_dependencies([finite]):
                outputs = tf.identity(outputs)
            choice = keras.ops.argmax(outputs, axis=-1)
            vote = keras.ops.one_hot(choice, self.num_classes, dtype="float32")
            votes = vote if votes is None else votes + vote
        return votes / float(self.k)

    def compile(self, loss=member_error, metrics=None, **kwargs):
        """Sets the metrics `evaluate` reports; the members keep their own compile.

        An ensemble is never trained by gradient descent on its own output
        (`fit` trains each member with the optimizer and loss it was
        compiled with in `build_model`), so it has no optimizer. Its loss
        defaults to `member_error`, the share of members voting against the
        label; `metrics` to the vote's accuracy (`vote_accuracy`, reported
        as `"accuracy"`, for sparse and one-hot labels alike).

        Args:
            loss: a loss on vote shares. Defaults to `member_error`.
            metrics: metrics of the vote shares, or `None` for the vote's
                accuracy. Defaults to `None`.
            **kwargs: other `keras.Model.compile` arguments, except
                `optimizer`.
        """
        if kwargs.get("optimizer") is not None:
            raise TypeError(
                f"{type(self).__name__} has no optimizer of its own: each member "
                "trains with the one it was compiled with inside `build_model`. "
                f"Received: optimizer={kwargs['optimizer']!r}"
            )
        kwargs.pop("optimizer", None)
        kwargs.setdefault("jit_compile", False)
        if metrics is None:
            metrics = [keras.metrics.MeanMetricWrapper(vote_accuracy, name="accuracy")]
        super().compile(optimizer=None, loss=loss, metrics=list(metrics), **kwargs)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        config.pop("optimizer", None)
        self.compile(**config)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "k": self.k,
                "num_classes": self.num_classes,
                "seed": self.seed,
                "members": [keras.saving.serialize_keras_object(m) for m in self.members],
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        # A config without weights builds fresh members: untrained, whatever
        # an older config said ("trained" was a config entry once).
        config.pop("trained", None)
        members = [
            keras.saving.deserialize_keras_object(m, custom_objects=custom_objects)
            for m in config.pop("members")
        ]
        return cls(members=members, **config)

    # -- votes -----------------------------------------------------------

    def vote_counts(self, x, batch_size=None, verbose=0):
        """How many members vote for each class, for every image of `x`.

        Args:
            x: images, a NumPy array (or anything `predict` takes).
            batch_size: int or `None`, as in `predict`. Defaults to `None`.
            verbose: as in `predict`. Defaults to `0`.

        Returns:
            An int64 array `(n, num_classes)`; each row sums to `k`.
        """
        shares = self.predict(x, batch_size=batch_size, verbose=verbose)
        return np.rint(np.asarray(shares, np.float64) * self.k).astype(np.int64)

    # -- training --------------------------------------------------------

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        sample_weight=None,
        **kwargs,
    ):
        """Trains every member on its own training subset, one after another.

        Members are trained with `member.fit(...)`, with the optimizer and
        loss `build_model` compiled them with. Under a `tf.distribute`
        strategy (build the ensemble inside `strategy.scope()`, as any Keras
        model), each member's `fit` runs data-parallel on the strategy's
        replicas. With `seed` set, `keras.utils.set_random_seed(seed +
        index)` is called before member `index` trains, so its shuffling and
        dropout depend only on its own subset.

        Args:
            x: training images, a NumPy array (`PartitionEnsemble` also
                takes an unbatched `tf.data.Dataset` of `(x, y)` or
                `(x, y, sample_weight)`, which members read in its own
                order, unshuffled: shuffle it upstream).
            y: labels, sparse or one-hot as the members' loss expects;
                `None` with a dataset.
            batch_size: int, the members' batch size. Defaults to `None`
                (Keras' 32).
            epochs: int >= 1, epochs of every member (an ensemble fitted for
                none would certify untrained members). Defaults to `1`.
            verbose: `0` silent, `1` one line per member, `2` also the
                members' own epoch lines; `"auto"` is `1`. Defaults to
                `"auto"`.
            callbacks: a list of callbacks given to every member's `fit`
                in turn, or a function `index -> list` to give each member
                its own (e.g. a `ModelCheckpoint` per member). Defaults to
                `None`.
            sample_weight: NumPy array `(n,)`, split with the examples.
                Defaults to `None`.
            **kwargs: passed to every member's `fit` (`validation_data`,
                `shuffle`, `class_weight`, ...).

        Returns:
            The members' `History` objects, a list of `k`.
        """
        epochs = validate_int("epochs", epochs, 1)
        if batch_size is not None:
            batch_size = validate_int("batch_size", batch_size, 1)
        verbose = _check_verbose(verbose)
        if callbacks is not None and not callable(callbacks):
            callbacks = list(callbacks)
        for name in ("validation_split", "steps_per_epoch", "initial_epoch"):
            if name in kwargs:
                raise TypeError(
                    f"{type(self).__name__}.fit does not take `{name}` (every member "
                    f"has its own subset). Received: {name}={kwargs[name]!r}"
                )
        subsets = self._subsets(x, y, sample_weight, batch_size)
        histories = []
        for index, (size, data, data_kwargs) in enumerate(subsets):
            member = self.members[index]
            started = time.time()
            if size == 0:
                warnings.warn(
                    f"{type(self).__name__}: member {index} of k={self.k} got no "
                    "training examples and keeps its initial weights (its vote still "
                    "counts). Use a smaller `k` for this training set.",
                    stacklevel=2,
                )
                histories.append(None)
                if verbose:
                    print(f"Member {index + 1}/{self.k}: 0 examples, not trained", flush=True)
                continue
            if self.seed is not None:
                keras.utils.set_random_seed(self.seed + index)
            member_callbacks = callbacks(index) if callable(callbacks) else callbacks
            fit_kwargs = dict(kwargs, **data_kwargs)
            if member_callbacks is not None:
                fit_kwargs["callbacks"] = member_callbacks
            history = member.fit(
                *data,
                epochs=epochs,
                verbose=2 if verbose == 2 else 0,
                **fit_kwargs,
            )
            histories.append(history)
            if verbose:
                last = {
                    key: values[-1] for key, values in history.history.items() if values
                }
                shown = "".join(f" - {key}: {value:.4f}" for key, value in last.items())
                print(
                    f"Member {index + 1}/{self.k}: {size} examples, "
                    f"{len(history.epoch)} epochs, {time.time() - started:.1f}s{shown}",
                    flush=True,
                )
        self.trained = True
        return histories

    @abc.abstractmethod
    def _subsets(self, x, y, sample_weight, batch_size):
        """Checks the data, then returns an iterator of `(size, args, kwargs)`.

        One triple per member, in order: `member.fit(*args, **kwargs)`
        trains it on its `size` examples.
        """

    def _check_arrays(self, x, y, sample_weight):
        """Checks NumPy training arrays before any work; returns them."""
        if isinstance(x, tf.data.Dataset):
            raise TypeError(
                f"{type(self).__name__}.fit takes NumPy arrays `x`, `y`. Received: "
                "a tf.data.Dataset; use PartitionEnsemble, which partitions a stream "
                "by content, or convert it to arrays."
            )
        if x is None or y is None:
            raise TypeError(
                f"Expected `x` and `y` (training images and labels). Received: "
                f"x={type(x).__name__}, y={type(y).__name__}"
            )
        x = np.asarray(x)
        labels, width = to_class_indices(y, "y")
        if len(x) != len(labels):
            raise ValueError(
                "Expected `x` and `y` to have the same number of examples. "
                f"Received: len(x)={len(x)}, len(y)={len(labels)}"
            )
        if width is not None and width != self.num_classes:
            raise ValueError(
                f"Expected one-hot `y` of width num_classes={self.num_classes}. "
                f"Received: y.shape={np.shape(y)}"
            )
        if labels.size and labels.max() >= self.num_classes:
            raise ValueError(
                f"Expected `y` labels in [0, {self.num_classes}). "
                f"Received: a label {int(labels.max())}"
            )
        expected = self._member_input_shape[1:]
        if x.ndim != len(expected) + 1 or any(
            e is not None and e != r for e, r in zip(expected, x.shape[1:])
        ):
            raise ValueError(
                f"Expected `x` of shape (n, {', '.join(str(e) for e in expected)}), "
                f"the members' input. Received: x.shape={x.shape}"
            )
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight)
            if sample_weight.shape[:1] != (len(x),):
                raise ValueError(
                    "Expected `sample_weight` of shape (n,) like `x`. "
                    f"Received: sample_weight.shape={sample_weight.shape}"
                )
        return x, np.asarray(y), labels, sample_weight


# ----------------------------------------------------------------------
# Deep Partition Aggregation.


@keras.saving.register_keras_serializable(package="keras_poison")
class PartitionEnsemble(_VotingEnsemble):
    """Deep Partition Aggregation: `k` members on disjoint parts, certified vote.

    Levine & Feizi, "Deep Partition Aggregation: Provable Defenses against
    General Poisoning Attacks" (ICLR 2021). The training set is split into
    `k` disjoint parts; example `i` goes to part `h(x_i) mod k`, where
    `h(x_i)` is the 64-bit fingerprint of the image's bytes
    (`keras_poison.fingerprints`, the label held fixed). The part of an
    example depends on nothing but its image: not its position, not its
    label, not on what else is in the training set. Member `j` is built by
    `build_model` and trained on part `j` only; from NumPy arrays, in an
    order fixed by the examples' content (so the same part in another order
    trains the same member, Keras' `shuffle` then keyed by `seed`). From a
    `tf.data.Dataset`, a member sees its part in the stream's order, every
    epoch alike (Keras does not shuffle datasets): shuffle the stream
    upstream (`ds.shuffle(n, seed=...)`), above all a stream sorted by
    class, such as one read class folder after class folder. The ensemble predicts the plurality vote of the members, ties
    going to the smaller class index.

    An attacker who inserts, deletes or relabels an example changes one
    part, and so at most one member's vote. `certify(x)` returns, with each
    prediction, the number of such poisons it provably survives,
    `floor((n_top - n_second - [second < top]) / 2)`. Changing an image
    may move it to another part, so it counts as two (a deletion and an
    insertion). The guarantee holds for the members as trained: training
    must depend only on the part (`seed` fixes shuffling and dropout;
    `tf.config.experimental.enable_op_determinism()` makes the arithmetic
    repeatable too).

    `PartitionEnsemble` is a `keras.Model`: `predict` returns the share of
    members voting for each class, `evaluate` reports the vote's accuracy
    (and `member_error` as its loss), and it saves to `.keras` and loads
    back with `keras.saving.load_model`.

    Known adaptive failure (outside the certificate): a budget far beyond
    the certified radius, spent where the data half-supports the new
    labels (`EvasiveFlip`, 800 of 4,000 MNIST labels), took 3.3–6.7 points
    with k = 5 or 10, where random flips took at most 1.2 (docs/benchmarks.md
    §18). The certificate is for a few poisons; many are only measured.

    Args:
        build_model: a function returning a compiled `keras.Model` (a
            functional model or a `Sequential` that starts with
            `keras.Input`) mapping images to `num_classes` scores. Called
            `k` times: as `build_model(index)` if it has a required
            positional parameter, else as `build_model()`, so members may
            differ (seeds, architectures).
        k: int >= 2, the number of parts and members; at most the number of
            training examples.
        num_classes: int >= 2, the number of classes.
        seed: int >= 0 or `None`; member `index` trains after
            `keras.utils.set_random_seed(seed + index)`. `None` leaves the
            random state alone. Defaults to `0`.
        members: a list of `k` compiled models to use instead of calling
            `build_model` (how a saved ensemble is rebuilt). Defaults to
            `None`.
        trained: bool, whether `members` are already trained on their
            parts (set by loading). Defaults to `False`.
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Example:

    >>> def build_model():
    ...     model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
    ...                               keras.layers.Rescaling(1 / 255),
    ...                               keras.layers.Dense(10, activation="softmax")])
    ...     model.compile("adam", "sparse_categorical_crossentropy")
    ...     return model
    >>> x = np.random.default_rng(0).integers(0, 256, (60, 8, 8, 1), dtype="uint8")
    >>> y = np.arange(60) % 10
    >>> ensemble = PartitionEnsemble(build_model, k=3, num_classes=10)
    >>> _ = ensemble.fit(x, y, epochs=1, verbose=0)
    >>> predictions, radius = ensemble.certify(x)
    >>> predictions.shape, bool(np.all(radius >= 0))
    ((60,), True)
    """

    def partition_of(self, x):
        """The part (member index) each image of `x` belongs to.

        The fingerprint of the image's bytes mod `k`: the same image, in the
        same dtype, always gets the same part.

        Args:
            x: NumPy array of images `(n, ...)`, in the dtype used for
                training.

        Returns:
            An int64 array `(n,)` with values in `[0, k)`.
        """
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError(
                f"Expected `x` of shape (n, ...). Received: x.shape={x.shape}"
            )
        keys = content_keys(x, np.zeros(len(x), np.int64))
        return np.mod(keys, self.k)

    def certify(self, x, batch_size=None, verbose=0):
        """The vote on every image of `x`, with its certificate.

        Args:
            x: images, a NumPy array.
            batch_size: int or `None`, as in `predict`. Defaults to `None`.
            verbose: as in `predict`. Defaults to `0`.

        Returns:
            `(predictions, radius)`, int64 arrays of shape `(n,)`:
            `radius[i]` is the number of poisoned training examples
            (insertions, deletions, label flips; an altered image counts
            twice) that provably cannot change `predictions[i]`.

        Raises:
            ValueError: if the ensemble has not been trained (`fit`).
        """
        if not self.trained:
            raise ValueError(
                "PartitionEnsemble.certify needs the members trained on their parts: "
                "call `fit(x, y)` first (or load a trained ensemble). Received: an "
                "untrained ensemble"
            )
        return certify_votes(self.vote_counts(x, batch_size=batch_size, verbose=verbose))

    def certified_accuracy(self, x, y, max_poisons=None, batch_size=None):
        """Certified accuracy on `(x, y)` against 0, 1, ... poisons.

        Args:
            x: test images.
            y: their labels, sparse or one-hot.
            max_poisons: int >= 0 or `None`, as in the function
                `certified_accuracy`. Defaults to `None`.
            batch_size: int or `None`, as in `predict`. Defaults to `None`.

        Returns:
            A float64 array: entry `r` is the share of examples predicted
            correctly with a certificate of at least `r` poisons.
        """
        predictions, radius = self.certify(x, batch_size=batch_size)
        return certified_accuracy(y, predictions, radius, max_poisons=max_poisons)

    # -- subsets ---------------------------------------------------------

    def _subsets(self, x, y, sample_weight, batch_size):
        if isinstance(x, tf.data.Dataset):
            return self._stream_subsets(x, y, sample_weight, batch_size)
        x, y, labels, sample_weight = self._check_arrays(x, y, sample_weight)
        if self.k > len(x):
            raise ValueError(
                f"Expected `k` <= the number of training examples ({len(x)}): every "
                f"part needs examples. Received: k={self.k}"
            )
        parts = self.partition_of(x)
        # Within a part, a fixed order by content: the member's data is a
        # function of the part alone, not of where its examples sat in `x`.
        order = np.argsort(content_keys(x, labels), kind="stable")
        return self._array_subsets(x, y, sample_weight, batch_size, parts, order)

    def _array_subsets(self, x, y, sample_weight, batch_size, parts, order):
        parts_in_order = parts[order]
        for index in range(self.k):
            chosen = order[parts_in_order == index]
            data = [x[chosen], y[chosen]]
            kwargs = {"batch_size": batch_size}
            if sample_weight is not None:
                kwargs["sample_weight"] = sample_weight[chosen]
            yield len(chosen), data, kwargs

    def _stream_subsets(self, dataset, y, sample_weight, batch_size):
        if y is not None or sample_weight is not None:
            raise TypeError(
                "Expected `y=None` and `sample_weight=None` with a tf.data.Dataset "
                "(labels and weights come from the stream). Received: "
                f"y={type(y).__name__}, sample_weight={type(sample_weight).__name__}"
            )
        spec = dataset.element_spec
        if not isinstance(spec, tuple) or len(spec) not in (2, 3) or not all(
            isinstance(s, tf.TensorSpec) for s in spec
        ):
            raise TypeError(
                "Expected a dataset of unbatched `(x, y)` or `(x, y, sample_weight)` "
                f"tensors. Received: element_spec={spec}"
            )
        image_spec, label_spec = spec[0], spec[1]
        expected = self._member_input_shape[1:]
        if image_spec.shape.rank == len(expected) + 1:
            raise ValueError(
                "Expected an unbatched dataset (elements of one image each, shape "
                f"{tuple(expected)}): parts are chosen per example. Received: "
                f"elements of shape {image_spec.shape}; call `.unbatch()` first "
                "and pass `batch_size`."
            )
        if image_spec.shape.rank != len(expected) or any(
            e is not None and s is not None and e != s
            for e, s in zip(expected, image_spec.shape.as_list())
        ):
            raise ValueError(
                f"Expected dataset images of shape {tuple(expected)}, the members' "
                f"input. Received: element_spec[0].shape={image_spec.shape}"
            )
        label_shape = label_spec.shape.as_list()
        one_hot = len(label_shape) == 1 and label_shape[0] not in (1, None)
        if len(label_shape) > 1 or (one_hot and label_shape[0] != self.num_classes):
            raise ValueError(
                "Expected dataset labels sparse (shape () or (1,)) or one-hot of width "
                f"num_classes={self.num_classes}. Received: shape {label_spec.shape}"
            )
        cardinality = int(dataset.cardinality())
        if cardinality == tf.data.INFINITE_CARDINALITY:
            raise ValueError(
                "Expected a finite dataset: each member makes its own pass over it. "
                "Received: an infinite dataset (remove `.repeat()`; use `epochs`)"
            )
        k = self.k

        def key_and_label(*element):
            key = _image_keys_tensor(element[0][None])[0]
            label = element[1]
            if one_hot:
                label = tf.argmax(label, output_type=tf.int64)
            return key, tf.reshape(tf.cast(label, tf.int64), ())

        def parts_digest(check_labels):
            """Per part: how many examples, and the wrapping sum of their keys."""
            counts = np.zeros(k, np.int64)
            digest = np.zeros(k, np.uint64)
            for keys, labels in dataset.map(key_and_label).batch(4096).as_numpy_iterator():
                if check_labels and labels.size and (
                    labels.min() < 0 or labels.max() >= self.num_classes
                ):
                    raise ValueError(
                        f"Expected dataset labels in [0, {self.num_classes}). Received: "
                        f"a label {int(labels.min() if labels.min() < 0 else labels.max())}"
                    )
                parts = np.mod(keys, k)
                counts += np.bincount(parts, minlength=k)
                np.add.at(digest, parts, keys.view(np.uint64))
            return counts, digest

        counts, digest = parts_digest(check_labels=True)
        total = int(counts.sum())
        # Parts are chosen by content, and every member reads the stream
        # again: one that yields other images on another pass (a random map
        # before `fit`) would train members on other parts than counted,
        # and void the certificate. Two passes must agree.
        counts_again, digest_again = parts_digest(check_labels=False)
        if not (np.array_equal(counts, counts_again) and np.array_equal(digest, digest_again)):
            raise ValueError(
                "PartitionEnsemble.fit: the dataset yielded other images on a second "
                "pass (a random map or augmentation before `fit`?). Parts are chosen "
                "by each image's content and every member reads the stream again, so "
                "it must yield the same images each pass: augment inside the model."
            )
        if k > total:
            raise ValueError(
                f"Expected `k` <= the number of training examples ({total}): every "
                f"part needs examples. Received: k={k}"
            )

        batch_size = batch_size or 32

        def stream(index):
            def in_part(*element):
                return tf.equal(
                    tf.math.floormod(_image_keys_tensor(element[0][None]), k)[0], index
                )

            # The counting pass gave the size: Keras shows progress, and a
            # stream that changes later still fails on the part's exact size.
            batches = -(-int(counts[index]) // batch_size)
            return (
                dataset.filter(in_part)
                .apply(tf.data.experimental.assert_cardinality(int(counts[index])))
                .batch(batch_size)
                .apply(tf.data.experimental.assert_cardinality(batches))
                .prefetch(tf.data.AUTOTUNE)
            )

        # Keras ignores (and warns about) `shuffle` for datasets.
        return ((int(counts[i]), [stream(i)], {"shuffle": False}) for i in range(k))


# ----------------------------------------------------------------------
# Bagging.


@keras.saving.register_keras_serializable(package="keras_poison")
class BaggingEnsemble(_VotingEnsemble):
    """Bagging: `k` members on bootstrap samples, plurality vote.

    Breiman, "Bagging predictors" (1996), the combinational model the
    class-oriented paper (§6) suggests against poisoning: member `j` is
    trained on `sample_size` examples drawn with replacement from the
    training set, so a poison enters only some members, and only as often
    as it was drawn. The ensemble predicts the plurality vote (ties to the
    smaller class index). The draws are a function of `(seed, j)` and the
    training set's content, not of its order: examples are put in an order
    fixed by their content fingerprints before drawing.

    Unlike `PartitionEnsemble`, bagging comes with no deterministic
    certificate: one poison can be drawn into every member.

    Known adaptive failure: every bag holds about the same share of the
    flips, so the vote repeats their effect. Evasive flips (`EvasiveFlip`,
    20% of MNIST 5k) took 5.4–7.2 points from `BaggingEnsemble(k=5)`, against
    0.8 for random flips (docs/benchmarks.md §18).

    Args:
        build_model: a function returning a compiled `keras.Model` mapping
            images to `num_classes` scores; called as `build_model(index)`
            if it has a required positional parameter, else
            `build_model()`.
        k: int >= 2, the number of members.
        num_classes: int >= 2, the number of classes.
        sample_size: the size of each bootstrap sample: an int >= 1, a
            float in (0, 1] (a fraction of the training set), or `None` for
            the whole training set's size. Defaults to `None`.
        seed: int >= 0 or `None`, the key of the draws; member `index` also
            trains after `keras.utils.set_random_seed(seed + index)`.
            `None` draws fresh samples each `fit`. Defaults to `0`.
        members: a list of `k` compiled models to use instead of calling
            `build_model`. Defaults to `None`.
        trained: bool, whether `members` are already trained. Defaults to
            `False`.
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Example:

    >>> def build_model():
    ...     model = keras.Sequential([keras.Input((4,)),
    ...                               keras.layers.Dense(3, activation="softmax")])
    ...     model.compile("adam", "sparse_categorical_crossentropy")
    ...     return model
    >>> x = np.random.default_rng(0).normal(size=(30, 4)).astype("float32")
    >>> ensemble = BaggingEnsemble(build_model, k=3, num_classes=3, sample_size=0.5)
    >>> _ = ensemble.fit(x, np.arange(30) % 3, verbose=0)
    >>> ensemble.vote_counts(x[:2]).sum(axis=1).tolist()
    [3, 3]
    """

    def __init__(
        self,
        build_model=None,
        k=None,
        num_classes=None,
        *,
        sample_size=None,
        seed=0,
        members=None,
        trained=False,
        **kwargs,
    ):
        self.sample_size = _check_sample_size(sample_size)
        super().__init__(
            build_model,
            k,
            num_classes,
            seed=seed,
            members=members,
            trained=trained,
            **kwargs,
        )

    def get_config(self):
        config = super().get_config()
        config["sample_size"] = self.sample_size
        return config

    def bootstrap_indices(self, x, y, index):
        """The training examples member `index` is trained on (with repeats).

        Args:
            x: the training images.
            y: their labels.
            index: int in `[0, k)`, the member.

        Returns:
            An int64 array of indices into `x`, of length the sample size.
        """
        x, _, labels, _ = self._check_arrays(x, y, None)
        index = validate_int("index", index, 0)
        if index >= self.k:
            raise ValueError(f"Expected `index` in [0, {self.k}). Received: index={index}")
        order = np.argsort(content_keys(x, labels), kind="stable")
        return self._draw(order, index)

    def _draw(self, order, index):
        n = len(order)
        if isinstance(self.sample_size, float):
            size = max(1, int(round(self.sample_size * n)))
        elif self.sample_size is None:
            size = n
        else:
            size = self.sample_size
        rng = np.random.default_rng(None if self.seed is None else [self.seed, index])
        return order[rng.integers(0, n, size=size)]

    def _subsets(self, x, y, sample_weight, batch_size):
        x, y, labels, sample_weight = self._check_arrays(x, y, sample_weight)
        if len(x) == 0:
            raise ValueError("Expected at least one training example. Received: empty `x`")
        order = np.argsort(content_keys(x, labels), kind="stable")
        return self._bootstrap_subsets(x, y, sample_weight, batch_size, order)

    def _bootstrap_subsets(self, x, y, sample_weight, batch_size, order):
        for index in range(self.k):
            chosen = self._draw(order, index)
            kwargs = {"batch_size": batch_size}
            if sample_weight is not None:
                kwargs["sample_weight"] = sample_weight[chosen]
            yield len(chosen), [x[chosen], y[chosen]], kwargs


# ----------------------------------------------------------------------
# Helpers.


def _image_keys_tensor(images):
    """int64 fingerprints of a batch of images alone (the label held at 0)."""
    return content_keys_tensor(images, tf.zeros(tf.shape(images)[:1], tf.int64))


def _call_builder(build_model, index):
    """Calls `build_model(index)` or `build_model()`, by its signature."""
    try:
        parameters = inspect.signature(build_model).parameters.values()
    except (TypeError, ValueError):
        parameters = []
    required = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if len(required) > 1:
        raise TypeError(
            "Expected `build_model` to take no required argument or one (the member "
            f"index). Received: a function of {len(required)} required arguments "
            f"({', '.join(p.name for p in required)})"
        )
    return build_model(index) if required else build_model()


def _check_member(member, index, num_classes, source):
    where = f"member {index} of `{source}`"
    if not isinstance(member, keras.Model):
        raise TypeError(
            f"Expected `{source}` to give compiled keras.Model objects. Received: "
            f"{member!r} of type {type(member).__name__} ({where})"
        )
    try:
        input_shape = member.input_shape
        output_shape = member.output_shape
    except (AttributeError, ValueError):
        raise TypeError(
            f"Expected `{source}` to give models with a known input shape (a "
            "functional model, or a Sequential that starts with keras.Input). "
            f"Received: {type(member).__name__} {member.name!r} without one ({where})"
        ) from None
    if not isinstance(input_shape, tuple) or not isinstance(output_shape, tuple) or (
        input_shape and isinstance(input_shape[0], (tuple, list))
    ):
        raise TypeError(
            f"Expected `{source}` to give models of one input and one output. "
            f"Received: input shape {input_shape}, output shape {output_shape} ({where})"
        )
    if len(output_shape) != 2 or output_shape[-1] != num_classes:
        raise ValueError(
            f"Expected `{source}` to give models of output shape (batch, "
            f"{num_classes}), one score per class (num_classes={num_classes}). "
            f"Received: output shape {output_shape} ({where})"
        )
    if not member.compiled:
        raise ValueError(
            f"Expected `{source}` to give compiled models (the ensemble trains each "
            "member with its own optimizer and loss): call `model.compile(...)` "
            f"before returning it. Received: an uncompiled model ({where})"
        )


def _check_verbose(verbose):
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(
            f'Expected `verbose` in (0, 1, 2, "auto"). Received: verbose={verbose!r}'
        )
    return int(verbose)


def _check_sample_size(sample_size):
    if sample_size is None:
        return None
    if isinstance(sample_size, (float, np.floating)):
        return validate_number("sample_size", sample_size, low=0.0, high=1.0, low_open=True)
    if isinstance(sample_size, bool) or not isinstance(sample_size, (int, np.integer)):
        raise TypeError(
            "Expected `sample_size` to be an int >= 1, a float in (0, 1] or None. "
            f"Received: sample_size={sample_size!r}"
        )
    return validate_int("sample_size", sample_size, 1)
