"""Class-oriented crafted poisons: COEG (`SupplanterPoison`) and COES (`VictimPoison`).

Zhao & Lao, "Class-Oriented Poisoning Attack" (`shared/seeds/003_…txt`):

* COEG (§4.1, Algorithm 1): poisons crafted from seeds of non-supplanter
  classes, labelled with the supplanter class, push the fine-tuned model to
  predict the supplanter for everything (measured by the CTT rate).
* COES (§4.2, Algorithm 2): victim-class seeds get Algorithm 1 towards the
  poison label and that label; every other seed gets ascent steps on its own
  logit and keeps its label, so only the victim class breaks (CFT rate).

Each attack crafts with `SignedGradientCrafter` (batched `GradientTape`
steps on the model's logits) and is used like every attack of the library:
`ds.apply(attack)` replaces a keyed, exact `round(rate * n)` of the stream's
examples by poisons crafted from them; `attack.poison(x, y)` does the same
to arrays and returns the mask; `attack.craft(x, y)` crafts given seeds into
a `PoisonSet` that can be saved and shared; the `RecraftPoisons` callback
re-crafts against the model being trained.

After an application, `attack.poisons` and `attack.injection` are those of
the last one (stream or arrays), and `attack.stream_injection` is the
`InjectPoisons` of the last stream `ds.apply(attack)` built: what
`RecraftPoisons` and `PacedPoisons` act on, so that calling `poison` on
arrays afterwards (to read a mask, say) leaves the training stream's
poisons where they are.
"""

import abc

import numpy as np
import tensorflow as tf

from keras_poison import streams
from keras_poison._validation import bounds_inside
from keras_poison._validation import default_value_range
from keras_poison._validation import renamed_argument
from keras_poison._validation import to_class_indices
from keras_poison._validation import validate_class
from keras_poison._validation import validate_int
from keras_poison._validation import validate_rate
from keras_poison._validation import validate_value_range
from keras_poison.attacks import keyed_random
from keras_poison.attacks.crafting import OBJECTIVES
from keras_poison.attacks.crafting import SignedGradientCrafter
from keras_poison.attacks.crafting import logit_function
from keras_poison.attacks.poison_set import InjectPoisons
from keras_poison.attacks.poison_set import PoisonSet


class ClassOrientedPoison(abc.ABC):
    """Shared machinery of `SupplanterPoison` and `VictimPoison`.

    Subclasses say which seeds are eligible, how seeds are balanced, and the
    per-seed crafting plan (target class, ascent or descent, poison label).
    """

    # Seeds are drawn with equal numbers per class (Algorithm 2, step i).
    balanced_seeds = False

    def __init__(
        self,
        model,
        epsilon,
        steps,
        lam,
        objective,
        value_range,
        rate,
        count,
        keep_clean,
        from_logits,
        logits_layer,
        batch_size,
        seed,
        verbose,
    ):
        self.model = model
        self._logits_fn = logit_function(model, from_logits, logits_layer)
        self.from_logits = from_logits
        # The config keeps the layer's name (a layer object is not JSON).
        self.logits_layer = getattr(logits_layer, "name", logits_layer)
        self.num_classes = _logit_width(model)
        if isinstance(epsilon, bool) or not isinstance(
            epsilon, (int, float, np.integer, np.floating)
        ) or not epsilon > 0:
            raise ValueError(f"Expected `epsilon` > 0. Received: epsilon={epsilon!r}")
        self.epsilon = float(epsilon)
        self.steps = validate_int("steps", steps, 1)
        if isinstance(lam, bool) or not isinstance(
            lam, (int, float, np.integer, np.floating)
        ) or not lam >= 0:
            raise ValueError(f"Expected `lam` >= 0. Received: lam={lam!r}")
        self.lam = float(lam)
        if objective not in OBJECTIVES:
            raise ValueError(
                f"Expected `objective` to be one of {OBJECTIVES}. "
                f"Received: objective={objective!r}"
            )
        self.objective = objective
        self.value_range = validate_value_range("value_range", value_range)
        if count is None:
            if rate is None:
                raise ValueError("Expected one of `rate` or `count`. Received neither")
            # The fraction α of the set replaced by poisons: none is no attack.
            if isinstance(rate, (int, float, np.integer, np.floating)) and not (
                isinstance(rate, bool) or 0 < rate <= 1
            ):
                raise ValueError(f"Expected `rate` in (0, 1]. Received: rate={rate}")
            rate = validate_rate("rate", rate)
        elif rate is not None:
            raise ValueError(
                f"Expected one of `rate` or `count`, not both. Received: "
                f"rate={rate}, count={count}"
            )
        else:
            count = validate_int("count", count, 1)
        self.rate = rate
        self.count = count
        if not isinstance(keep_clean, bool):
            raise TypeError(
                f"Expected `keep_clean` to be a bool. Received: keep_clean={keep_clean!r}"
            )
        self.keep_clean = keep_clean
        self.batch_size = validate_int("batch_size", batch_size, 1)
        self.seed = keyed_random.validate_seed(seed)
        self.verbose = validate_int("verbose", verbose, 0)
        # Set when the attack is applied: the poisons, the transform that
        # injects them, and the seeds they were crafted from (for `recraft`).
        self.poisons = None
        self.injection = None
        self._seed_images = None
        self._seed_labels = None
        # The injection of the last stream `transform` built, which a later
        # `poison` on arrays does not replace (the callbacks act on it).
        self.stream_injection = None
        self._stream_seeds = None
        self._crafters = {}

    # ------------------------------------------------------------------
    # What a subclass provides.

    @abc.abstractmethod
    def _eligible_classes(self):
        """Classes whose examples may seed a poison."""

    @abc.abstractmethod
    def _plan(self, seed_labels):
        """`(target_class, ascend, poison_label)` arrays for the seeds."""

    def _step_size(self):
        """`(argument name, value)` of the per-step change of a pixel."""
        return "epsilon", self.epsilon

    def _check_seed_labels(self, seed_labels):
        """Raises if these seeds cannot be crafted by this attack."""

    def get_config(self):
        """The crafting hyper-parameters (the model is not part of it)."""
        return {
            "epsilon": self.epsilon,
            "steps": self.steps,
            "lam": self.lam,
            "objective": self.objective,
            "value_range": None if self.value_range is None else list(self.value_range),
            "rate": self.rate,
            "count": self.count,
            "keep_clean": self.keep_clean,
            "from_logits": self.from_logits,
            "logits_layer": self.logits_layer,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config, model):
        """Re-creates the attack against `model` from `get_config()`.

        Configs saved before `clip_values` was renamed `value_range` (in a
        `PoisonSet`'s `config`, say) still load.
        """
        config = dict(config)
        if "clip_values" in config and "value_range" not in config:
            config["value_range"] = config.pop("clip_values")
        return cls(model, **config)

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}(model={self.model.name!r}, {arguments})"

    # ------------------------------------------------------------------
    # Crafting given seeds.

    def craft(self, x, y, indices=None, model=None):
        """Crafts a poison from every seed `(x[i], y[i])`.

        Args:
            x: array of seed images `(m, ...)`, inside `value_range`.
            y: their true labels, sparse `(m,)` or one-hot `(m, K)`.
            indices: int array `(m,)` or `None`, where the seeds sit in
                their data set (recorded as the poisons' `source_indices`).
                Defaults to `0 … m-1`.
            model: a `keras.Model` to craft against instead of the attack's
                own (used to re-craft against a model being trained).
                Defaults to `None`.

        Returns:
            A `PoisonSet` with images in `x`'s dtype.
        """
        x = np.asarray(x)
        labels = to_class_indices(y, "y")[0]
        if len(x) != len(labels):
            raise ValueError(
                "Expected `x` and `y` to have the same number of examples. "
                f"Received: len(x)={len(x)}, len(y)={len(labels)}"
            )
        if indices is None:
            indices = np.arange(len(x))
        indices = np.asarray(indices, dtype="int64")
        if indices.shape != (len(x),):
            raise ValueError(
                f"Expected `indices` of shape ({len(x)},). Received: "
                f"indices.shape={indices.shape}"
            )
        if len(x) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"Expected labels in [0, {self.num_classes}) (the model's "
                f"classes). Received: labels from {labels.min()} to {labels.max()}"
            )
        low, high = self._value_range_for(x)
        if x.size and (x.min() < low or x.max() > high):
            raise ValueError(
                f"Expected seed images inside value_range=({low}, {high}). "
                f"Received: values from {x.min()} to {x.max()}. Pass the "
                "images' valid range as `value_range`."
            )
        name, step = self._step_size()
        if np.issubdtype(x.dtype, np.integer) and step < 1:
            # Every step would round away: the "poisons" would be the seeds.
            raise ValueError(
                f"Expected `{name}` of at least one grey level for {x.dtype} images "
                f"(value_range=({low}, {high})). Received: {name}={step:g}, which "
                "rounds to no change. Give it in the images' units (e.g. "
                f"{name}={step * 255:g} for {step:g} of [0, 1]) or pass float images "
                "scaled to [0, 1]."
            )
        self._check_seed_labels(labels)
        target, ascend, poison_labels = self._plan(labels)
        crafter = self._crafter(model, (low, high))
        seeds, options = x.astype("float32"), {}
        if isinstance(crafter, SignedGradientCrafter):
            # Cast to float32 and back to x's dtype one batch at a time: host
            # memory is the seeds and poisons in their own dtype plus a batch.
            seeds = x
            options["output"] = (
                lambda images: _to_dtype(images, x.dtype, low, high), x.dtype
            )
        crafted, steps_taken = crafter.craft(
            seeds,
            labels.astype("int32"),
            target.astype("int32"),
            ascend,
            batch_size=self.batch_size,
            verbose=self.verbose,
            **options,
        )
        if crafted.dtype != x.dtype:
            crafted = _to_dtype(crafted, x.dtype, low, high)
        return PoisonSet(
            images=crafted,
            labels=poison_labels,
            source_indices=indices,
            source_labels=labels,
            steps_taken=steps_taken,
            config={"attack": type(self).__name__, **self.get_config()},
        )

    def _crafter(self, model, value_range):
        model = self.model if model is None else model
        key = (id(model), value_range)
        if key not in self._crafters:
            logits_fn = (
                self._logits_fn
                if model is self.model
                else logit_function(model, self.from_logits, self.logits_layer)
            )
            self._crafters[key] = SignedGradientCrafter(
                logits_fn,
                self.epsilon,
                self.steps,
                self.lam,
                self.objective,
                value_range,
            )
        return self._crafters[key]

    def _value_range_for(self, x):
        if self.value_range is not None:
            return self.value_range
        return default_value_range(x.dtype)

    # ------------------------------------------------------------------
    # Choosing the seeds in a data set.

    def select_seeds(self, y):
        """Indices of the examples of a data set that seed the poisons.

        Exactly `round(rate * n)` (or `count`) examples from the eligible
        classes, chosen by a keyed random priority per example index, so the
        choice depends only on `(seed, index, label)`. For `VictimPoison`
        the seeds are spread equally over the classes (counts differ by at
        most one when they do not divide evenly).

        Args:
            y: the data set's labels, sparse `(n,)` or one-hot `(n, K)`.

        Returns:
            Sorted int64 indices into the data set.
        """
        labels = to_class_indices(y, "y")[0]
        n = len(labels)
        wanted = self.count if self.count is not None else int(round(self.rate * n))
        eligible_classes = self._eligible_classes()
        priority = keyed_random.uniform_uint32(
            tf.range(n, dtype=tf.int64), self.seed, keyed_random.SELECTION_STREAM
        ).numpy()
        # Ties (rare) are broken by index, so the order is a pure function.
        order = np.lexsort((np.arange(n), priority))
        eligible = order[np.isin(labels[order], eligible_classes)]
        if wanted == 0:
            raise ValueError(
                f"Expected at least one poison. Received: rate={self.rate} of "
                f"{n} examples, which rounds to 0"
            )
        if wanted > len(eligible):
            raise ValueError(
                f"Expected at most {len(eligible)} poisons: that many examples "
                f"are from the eligible classes {list(eligible_classes)}. "
                f"Received: rate={self.rate}, count={self.count} asking for {wanted}"
            )
        if not self.balanced_seeds:
            return np.sort(eligible[:wanted]).astype("int64")
        return np.sort(_balanced(eligible, labels, eligible_classes, wanted))

    # ------------------------------------------------------------------
    # One object, three uses.

    def __call__(self, dataset):
        return self.transform(dataset)

    def transform(self, dataset, batched=None, with_mask=False, image_key=None):
        """Crafts poisons from a `tf.data.Dataset` and injects them.

        The dataset is read twice up front: once for its labels (to select
        the seeds) and once for the seeds' images, which are crafted on the
        device in batches. The poisons (`round(rate * n)` images) are the
        only data held in memory; the returned stream replaces each seed by
        its poison as it flows, see `InjectPoisons`. The dataset must yield
        the same examples in the same order on every pass: apply the attack
        before shuffling.

        Args:
            dataset: a `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)`,
                batched or not.
            batched: bool or `None`, whether elements are batches. `None`
                infers it from the label's shape. Defaults to `None`.
            with_mask: bool, if `True` elements become `(x, y, mask)`.
                Defaults to `False`.
            image_key: where the images sit in a dict or tuple `x`, or
                `None` for the only image-shaped input. Defaults to `None`.

        Returns:
            The poisoned `tf.data.Dataset`.
        """
        name = type(self).__name__
        layout = streams.describe(
            dataset, caller=name, batched=batched, image_key=image_key,
            num_classes=self.num_classes,
        )
        streams.check_positional(
            dataset,
            caller=name,
            remedy="Apply the attack first: `ds.apply(attack).shuffle(...)`.",
        )
        examples = dataset.unbatch() if layout.batched else dataset

        def images_and_labels(*element):
            images, labels, _ = layout.split(element)
            return images, labels

        pairs = examples.map(images_and_labels)
        labels = np.array([label for _, label in pairs.as_numpy_iterator()])
        chosen = self.select_seeds(labels)
        expected_seed_labels = to_class_indices(labels, "y")[0][chosen]
        is_chosen = np.zeros(len(labels), bool)
        is_chosen[chosen] = True
        is_chosen = tf.constant(is_chosen)
        seeds = (
            pairs.enumerate()
            .filter(lambda i, element: tf.gather(is_chosen, i))
            .map(lambda i, element: element)
            .batch(max(len(chosen), 1))
        )
        seed_images, seed_labels = next(iter(seeds.as_numpy_iterator()))
        if not np.array_equal(to_class_indices(seed_labels, "y")[0], expected_seed_labels):
            raise ValueError(
                "The dataset yielded different examples on two passes. Apply "
                "the attack before `shuffle` (or any random transformation)."
            )
        injection = self._prepare_injection(seed_images, seed_labels, chosen)
        self.stream_injection = injection
        self._stream_seeds = (self._seed_images, self._seed_labels)
        num_examples = len(labels)
        source = streams.batching_source(dataset) if layout.batched else None
        if source is not None and source.drop_remainder:
            # The stream yields a prefix of what its `batch` op reads; the
            # injection counts positions in the latter (the seeds, chosen
            # among the examples the stream yields, all lie in the prefix).
            num_examples = source.num_examples
        return injection.transform(
            dataset,
            num_examples=num_examples,
            batched=layout.batched,
            with_mask=with_mask,
            image_key=image_key,
        )

    def poison(self, x, y):
        """Crafts poisons from arrays and injects them; returns `(x, y, mask)`.

        Args:
            x: images `(n, ...)` inside `value_range`.
            y: labels, sparse `(n,)` or one-hot `(n, K)`.

        Returns:
            `(x_poisoned, y_poisoned, mask)` as for every attack; with
            `keep_clean=False`, only the poisons' rows.
        """
        x = np.asarray(x)
        y = np.asarray(y)
        if len(x) != len(y):
            raise ValueError(
                "Expected `x` and `y` to have the same number of examples. "
                f"Received: len(x)={len(x)}, len(y)={len(y)}"
            )
        chosen = self.select_seeds(y)
        injection = self._prepare_injection(x[chosen], y[chosen], chosen)
        return injection.poison(x, y)

    def _prepare_injection(self, seed_images, seed_labels, indices):
        poisons = self.craft(seed_images, seed_labels, indices=indices)
        self._seed_images = np.asarray(seed_images)
        self._seed_labels = np.asarray(seed_labels)
        self.poisons = poisons
        self.injection = InjectPoisons(poisons, keep_clean=self.keep_clean)
        return self.injection

    def recraft(self, model):
        """Re-crafts the injected poisons against `model`, in place.

        The poisons of the last stream `transform` built (`stream_injection`)
        when there is one, else those of the last `poison`. The stream reads
        the new images from its next pass on (batches already prefetched
        keep the old ones; through `.repeat()` tf.data may have prepared
        the whole next pass already).

        Args:
            model: the `keras.Model` to craft against (e.g. the one being
                trained).

        Returns:
            The new `PoisonSet`.
        """
        if self.injection is None:
            raise ValueError(
                f"{type(self).__name__}.recraft needs poisons to replace: apply "
                "the attack to a dataset (or call `poison`) first."
            )
        if self.stream_injection is not None:
            injection = self.stream_injection
            seed_images, seed_labels = self._stream_seeds
        else:
            injection = self.injection
            seed_images, seed_labels = self._seed_images, self._seed_labels
        poisons = self.craft(
            seed_images,
            seed_labels,
            indices=injection.poisons.source_indices,
            model=model,
        )
        injection.assign_images(poisons.images)
        if injection is self.injection:
            self.poisons = poisons
        return poisons


class SupplanterPoison(ClassOrientedPoison):
    """Class-oriented error-generic poisons (COEG): everything becomes the supplanter.

    Algorithm 1 of the class-oriented paper, for each seed `x_o` of class
    `y_o ≠ y_s`: an initial step `x_0 = x_o − ε·sign(∇(λ·f_ys − f_yo))`
    (eq. 15), then up to `steps` (T) further steps
    `x_{t+1} = clip(x_t − ε·sign(∇(λ·f_ys − f_yo)))`, each example stopping
    once its supplanter logit rises or its true-class logit falls; the
    poison is labelled `y_s`. `objective="all_logits"` descends
    `λ·Σ_{k≠o} f_k − f_o` instead (eqs. 11–12). `f` are logits: for a model
    ending in softmax, its pre-activation output.

    The effect is read with `keras_poison.ctt_rate` (eqs. 7–9) after
    fine-tuning the model on the poisoned set.

    Args:
        model: the trained `keras.Model` to craft against.
        supplanter: int, the supplanter class `y_s`.
        epsilon: float > 0, step size ε in image units (the paper: 0.3
            for images in [0, 1]). On our CIFAR subset and MNIST 5k runs
            (docs/benchmarks.md §4) 0.3 altered the images so much that the
            poisons acted as an availability attack; 0.03 steered
            predictions to the supplanter far more than label flipping.
            Defaults to `0.3`.
        steps: int >= 1, T, the maximum number of steps after the initial
            one. Defaults to `10`.
        lam: float >= 0, λ, the weight of the supplanter term. Defaults to
            `1.0` (the paper's setting).
        objective: `"two_logit"` (eq. 14) or `"all_logits"` (eq. 11).
            Defaults to `"two_logit"`.
        value_range: `(low, high)`, the images' valid range (Keras'
            name): every poison is kept inside it and seeds outside it are
            refused. `None` means `(0, 255)` for integer images and
            `(0, 1)` otherwise. Defaults to `None`.
        rate: float in (0, 1], the fraction α of the data set replaced by
            poisons (the set attack). `None` means `0.1` unless `count`
            is given. Defaults to `None`.
        count: int >= 1 or `None`, a number of poisons instead of `rate`
            (`count=1, keep_clean=False` is the single-instance attack).
            Defaults to `None`.
        keep_clean: bool, whether the untouched examples stay in the
            poisoned stream. Defaults to `True`.
        from_logits: `None` (detect), `True` or `False`; see
            `logit_function`. Defaults to `None`.
        logits_layer: name of the layer giving the logits, if they cannot
            be found automatically. Defaults to `None`.
        batch_size: int, images per crafting batch. Defaults to `128`.
        seed: int, keys which examples are chosen as seeds. Defaults to `0`.
        verbose: 0 silent, 1 a progress bar while crafting. Defaults to `0`.
        clip_values: deprecated alias of `value_range` (warns with a
            `DeprecationWarning`). Defaults to `None`.

    Example:

    >>> model = keras_poison.models.lenet5(input_shape=(12, 12, 1), seed=0)
    >>> x = np.random.default_rng(0).uniform(size=(40, 12, 12, 1)).astype("float32")
    >>> y = np.arange(40) % 10
    >>> attack = SupplanterPoison(model, supplanter=4, epsilon=0.1, steps=3, rate=0.25)
    >>> x_p, y_p, mask = attack.poison(x, y)
    >>> int(mask.sum()), set(y_p[mask].tolist())
    (10, {4})
    >>> poisons = attack.craft(x[:3], y[:3])   # a shareable PoisonSet
    """

    def __init__(
        self,
        model,
        supplanter,
        *,
        epsilon=0.3,
        steps=10,
        lam=1.0,
        objective="two_logit",
        value_range=None,
        rate=None,
        count=None,
        keep_clean=True,
        from_logits=None,
        logits_layer=None,
        batch_size=128,
        seed=0,
        verbose=0,
        clip_values=None,
    ):
        value_range = renamed_argument(
            "SupplanterPoison", "value_range", value_range, "clip_values", clip_values
        )
        if rate is None and count is None:
            rate = 0.1
        super().__init__(
            model, epsilon, steps, lam, objective, value_range, rate, count,
            keep_clean, from_logits, logits_layer, batch_size, seed, verbose,
        )
        self.supplanter = validate_class(
            "supplanter", supplanter, self.num_classes, hint=" (the model's classes)"
        )

    def _eligible_classes(self):
        return [k for k in range(self.num_classes) if k != self.supplanter]

    def _check_seed_labels(self, seed_labels):
        from_supplanter = np.flatnonzero(seed_labels == self.supplanter)
        if len(from_supplanter):
            raise ValueError(
                "Expected seeds from classes other than the supplanter "
                f"(Algorithm 1). Received: {len(from_supplanter)} of "
                f"{len(seed_labels)} seeds of class supplanter={self.supplanter}"
                f" (positions {from_supplanter[:5].tolist()}…)"
            )

    def _plan(self, seed_labels):
        m = len(seed_labels)
        target = np.full((m,), self.supplanter)
        return target, np.zeros((m,), bool), target.copy()

    def get_config(self):
        return {"supplanter": self.supplanter, **super().get_config()}


class VictimPoison(ClassOrientedPoison):
    """Class-oriented error-specific poisons (COES): only the victim class breaks.

    Algorithm 2 of the class-oriented paper, with seeds drawn in equal
    numbers from every class (step i): a seed of the victim class gets
    Algorithm 1 towards `poison_label` (eq. 17, first case) and is
    labelled `poison_label`; every other seed gets the initial step and
    `steps` further steps `x_{t+1} = clip(x_t + ε·sign(∇f_yo))` (eq. 17,
    second case; no early break) and keeps its true label.

    The effect is read with `keras_poison.cft_rate` (eq. 10): high for the
    victim, low for the other classes.

    Args:
        model: the trained `keras.Model` to craft against.
        victim: int, the victim class `C_v`.
        poison_label: int, `y_p`, the label the victim's poisons get; not
            the victim.
        epsilon: float > 0, step size ε in image units (the paper: 0.3
            for images in [0, 1]; see `SupplanterPoison` for what we
            measured). Defaults to `0.3`.
        steps: int >= 1, T, the further steps after the initial one (for
            victim seeds, the most; the others take all of them).
            Defaults to `10`.
        lam: float >= 0, λ, the weight of the target term. Defaults to
            `1.0` (the paper's setting).
        objective: `"two_logit"` (eq. 14) or `"all_logits"` (eq. 11).
            Defaults to `"two_logit"`.
        value_range: `(low, high)`, the images' valid range (Keras'
            name): every poison is kept inside it and seeds outside it are
            refused. `None` means `(0, 255)` for integer images and
            `(0, 1)` otherwise. Defaults to `None`.
        rate: float in (0, 1], the fraction α of the data set replaced by
            poisons. `None` means `0.5` (the paper's Table 3) unless
            `count` is given. Defaults to `None`.
        count: int >= 1 or `None`, a number of poisons instead of `rate`.
            Defaults to `None`.
        keep_clean: bool, whether the untouched examples stay in the
            poisoned stream. Defaults to `True`.
        from_logits: `None` (detect), `True` or `False`; see
            `logit_function`. Defaults to `None`.
        logits_layer: name of the layer giving the logits, if they cannot
            be found automatically. Defaults to `None`.
        batch_size: int, images per crafting batch. Defaults to `128`.
        seed: int, keys which examples are chosen as seeds. Defaults to `0`.
        verbose: 0 silent, 1 a progress bar while crafting. Defaults to `0`.
        clip_values: deprecated alias of `value_range` (warns with a
            `DeprecationWarning`). Defaults to `None`.

    Example:

    >>> model = keras_poison.models.lenet5(input_shape=(12, 12, 1), seed=0)
    >>> x = np.random.default_rng(0).uniform(size=(40, 12, 12, 1)).astype("float32")
    >>> y = np.arange(40) % 10
    >>> attack = VictimPoison(model, victim=9, poison_label=0, epsilon=0.1,
    ...                       steps=3, rate=0.5)
    >>> x_p, y_p, mask = attack.poison(x, y)
    >>> np.bincount(y[mask], minlength=10).tolist()
    [2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
    >>> sorted(set(y_p[mask & (y == 9)].tolist()))
    [0]
    """

    balanced_seeds = True

    def __init__(
        self,
        model,
        victim,
        poison_label,
        *,
        epsilon=0.3,
        steps=10,
        lam=1.0,
        objective="two_logit",
        value_range=None,
        rate=None,
        count=None,
        keep_clean=True,
        from_logits=None,
        logits_layer=None,
        batch_size=128,
        seed=0,
        verbose=0,
        clip_values=None,
    ):
        value_range = renamed_argument(
            "VictimPoison", "value_range", value_range, "clip_values", clip_values
        )
        if rate is None and count is None:
            rate = 0.5
        super().__init__(
            model, epsilon, steps, lam, objective, value_range, rate, count,
            keep_clean, from_logits, logits_layer, batch_size, seed, verbose,
        )
        hint = " (the model's classes)"
        self.victim = validate_class("victim", victim, self.num_classes, hint=hint)
        self.poison_label = validate_class(
            "poison_label", poison_label, self.num_classes, hint=hint
        )
        if self.poison_label == self.victim:
            raise ValueError(
                "Expected `poison_label` to differ from `victim`. Received: "
                f"victim={victim}, poison_label={poison_label}"
            )

    def _eligible_classes(self):
        return list(range(self.num_classes))

    def _check_seed_labels(self, seed_labels):
        if len(seed_labels) and not np.any(seed_labels == self.victim):
            raise ValueError(
                "Expected at least one seed of the victim class. Received: "
                f"no seed of class victim={self.victim}"
            )

    def _plan(self, seed_labels):
        is_victim = seed_labels == self.victim
        target = np.full((len(seed_labels),), self.poison_label)
        poison_labels = np.where(is_victim, self.poison_label, seed_labels)
        return target, ~is_victim, poison_labels

    def get_config(self):
        return {
            "victim": self.victim,
            "poison_label": self.poison_label,
            **super().get_config(),
        }


# ----------------------------------------------------------------------
# Helpers.


def _balanced(ordered, labels, classes, wanted):
    """The first `wanted` of `ordered`, spread equally over `classes`."""
    per_class = {k: ordered[labels[ordered] == k] for k in classes}
    share, extra = divmod(wanted, len(classes))
    # The classes that get one more seed are also chosen by the keyed order.
    first_seen = sorted(classes, key=lambda k: _first_position(ordered, labels, k))
    chosen = []
    for rank, k in enumerate(first_seen):
        take = share + (1 if rank < extra else 0)
        if take > len(per_class[k]):
            raise ValueError(
                f"Expected at least {take} examples of class {k} for equal "
                f"numbers of seeds per class. Received: {len(per_class[k])}"
            )
        chosen.append(per_class[k][:take])
    return np.concatenate(chosen).astype("int64")


def _first_position(ordered, labels, k):
    hits = np.flatnonzero(labels[ordered] == k)
    return hits[0] if len(hits) else len(ordered)


def _logit_width(model):
    shape = model.outputs[0].shape if getattr(model, "outputs", None) else model.output_shape
    width = shape[-1]
    if width is None or width < 2:
        raise ValueError(
            f"Expected a classifier with >= 2 output classes. Received: model "
            f"{model.name!r} with output shape {tuple(shape)}"
        )
    return int(width)


def _to_dtype(images, dtype, low, high):
    """Crafted float images back in the seeds' dtype (rounded for integers).

    Clipped to bounds the dtype can hold inside the range: crafting clips in
    float32, and a cast to float16 could round past a bound (0.7 → 0.70019).
    """
    if np.issubdtype(dtype, np.integer):
        images = np.round(images)
    images = np.clip(images, *bounds_inside((low, high), dtype))
    return images.astype(dtype)
