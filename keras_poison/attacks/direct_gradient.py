"""The direct gradient method (DGM) of Yang et al. as a crafting attack: `DirectGradientPoison`.

Chaofei Yang, Qing Wu, Hai Li and Yiran Chen, "Generative Poisoning Attack
Method Against Neural Networks", arXiv:1703.01340 (2017): the baseline the
class-oriented poisoning paper (`shared/seeds/003_…txt`, its reference
[45]) compares against in its Figures 2 and 3. A poison `x_p` with label
`y_p` is pushed, by signed steps, to raise the loss of the model on a small
set of clean *normal* examples after the model has taken one SGD step on
`(x_p, y_p)`:

    w'(x_p) = w − lr · ∇_w ℓ(x_p, y_p; w)
    J(x_p)  = (1/m) Σ_j ℓ(x_j, y_j; w'(x_p))        over the normal set
    x_p    ← clip(x_p + γ · sign(∇_{x_p} J(x_p)))    for R rounds

The authors estimate `∇J` pixel by pixel with finite differences. Here it
is exact by default: nested `GradientTape`s differentiate through the
unrolled step,

    ∇_{x_p} J = −lr · (∂²ℓ(x_p, y_p; w) / ∂x_p ∂w)ᵀ · ∇_w L_normal(w'(x_p)),

a mixed second derivative applied to the normal-set gradient taken at the
*stepped* weights `w'(x_p)` (not at `w`: that would be only the first-order
approximation in `lr`). Each poison gets its own step, so `w'` and the
normal-set pass are per poison; a batch runs as one `tf.map_fn` inside a
`tf.function`. `gradient="finite_difference"` gives the authors' forward
differences instead, for a cross-check on a tiny model.

`DirectGradientPoison` is used like the class-oriented attacks it is
compared with: `ds.apply(attack)`, `attack.poison(x, y)` (with the mask),
`attack.craft(x, y)` → `PoisonSet`, `RecraftPoisons`.
"""

import hashlib

import keras
import numpy as np
import tensorflow as tf

from keras_poison._validation import default_value_range
from keras_poison._validation import to_class_indices
from keras_poison._validation import validate_class
from keras_poison._validation import validate_int
from keras_poison._validation import validate_rate
from keras_poison._validation import validate_value_range
from keras_poison.attacks import keyed_random
from keras_poison.attacks.class_oriented import ClassOrientedPoison
from keras_poison.attacks.class_oriented import _logit_width
from keras_poison.attacks.crafting import logit_function

GRADIENTS = ("exact", "finite_difference")


class DirectGradientPoison(ClassOrientedPoison):
    """Direct gradient method (DGM) poisons: raise the normal-set loss after one SGD step.

    The baseline of the class-oriented poisoning paper (its reference [45]:
    Yang et al., "Generative Poisoning Attack Method Against Neural
    Networks", arXiv:1703.01340, 2017). For each seed `x_o` with poison
    label `y_p`, `rounds` (R) signed steps of size `gamma` (γ)

    ```text
    x_{r+1} = clip(x_r + γ · sign(∇_x J(x_r))),  x_0 = x_o
    J(x)    = mean over the normal set of ℓ(x_j, y_j; w − lr · ∇_w ℓ(x, y_p; w))
    ```

    raise the loss `J` that the model has on the clean `normal_data` after
    one SGD step (learning rate `learning_rate`) on the poison alone; `ℓ`
    is softmax cross-entropy on the model's logits. By default `∇J` is
    exact, through the unrolled step with nested `GradientTape`s:
    `−lr · (∂²ℓ(x, y_p)/∂x∂w)ᵀ · ∇_w L_normal(w')`, with the normal-set
    gradient taken at each poison's own stepped weights `w'`.
    `gradient="finite_difference"` estimates it per pixel by forward
    differences of size `delta` (δ), as the authors do: one normal-set pass
    per pixel, so only for tiny models or cross-checks.

    The poison label follows the authors' code, `y_p = (y + 1) mod K`;
    `poison_label=k` labels every poison `k` instead (then seeds come from
    the other classes), e.g. the supplanter of a COEG comparison. Seeds are
    chosen as for `SupplanterPoison`: exactly `round(rate · n)` (or
    `count`), keyed on `(seed, index)`. The model's weights are never
    changed: the step lives inside the computation. Inference mode is used
    throughout (dropout off, batch-norm moving statistics), so poisons are
    deterministic.

    Args:
        model: the trained `keras.Model` to craft against.
        normal_data: `(x, y)`, the clean "normal" examples whose loss the
            poisons raise: images inside `value_range` with the model's
            input shape, labels sparse `(m,)` or one-hot `(m, K)`. Each
            gradient costs one pass over them per poison, so keep it small
            (tens to a few hundred images). Required.
        poison_label: `None` for `(y + 1) mod K` (the authors' code), or an
            int class every poison is labelled with. Defaults to `None`.
        learning_rate: float > 0, the rate `lr` of the one SGD step the
            attacker assumes. Defaults to `0.05` (the authors' MNIST code,
            on images in [0, 1]).
        gamma: float > 0, γ, the signed step in image units. Defaults to
            `0.2` (the authors' MNIST code).
        rounds: int >= 1, R, the number of signed steps. Defaults to `5`.
        gradient: `"exact"` (nested `GradientTape`s) or
            `"finite_difference"` (the authors' per-pixel estimate).
            Defaults to `"exact"`.
        delta: float > 0, δ, the finite-difference step in image units
            (used by `gradient="finite_difference"`). Defaults to `0.01`.
        value_range: `(low, high)`, the images' valid range (Keras' name):
            poisons are clipped to it after every step, and seeds or normal
            images outside it are refused. `None` means `(0, 255)` for
            integer images and `(0, 1)` otherwise. Defaults to `None`.
        rate: float in (0, 1], the fraction of the data set replaced by
            poisons. `None` means `0.1` unless `count` is given. Defaults
            to `None`.
        count: int >= 1 or `None`, a number of poisons instead of `rate`
            (`count=1, keep_clean=False` is the single-instance attack).
            Defaults to `None`.
        keep_clean: bool, whether the untouched examples stay in the
            poisoned stream. Defaults to `True`.
        from_logits: `None` (detect), `True` or `False`; see
            `logit_function`. Defaults to `None`.
        logits_layer: name of the layer giving the logits, if they cannot
            be found automatically. Defaults to `None`.
        batch_size: int, poisons per crafting batch. Defaults to `32`.
        seed: int, keys which examples are chosen as seeds. Defaults to `0`.
        verbose: 0 silent, 1 a progress bar while crafting. Defaults to `0`.

    Example:

    >>> model = keras_poison.models.lenet5(input_shape=(12, 12, 1), seed=0)
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(size=(40, 12, 12, 1)).astype("float32")
    >>> y = np.arange(40) % 10
    >>> attack = DirectGradientPoison(model, normal_data=(x[:10], y[:10]),
    ...                               rounds=2, rate=0.25)
    >>> x_p, y_p, mask = attack.poison(x, y)
    >>> int(mask.sum()), bool(np.all(y_p[mask] == (y[mask] + 1) % 10))
    (10, True)
    >>> # The objective J: the normal-set loss after one SGD step on each poison.
    >>> before = attack.normal_loss(x[mask], y_p[mask])
    >>> bool(attack.normal_loss(x_p[mask], y_p[mask]).mean() > before.mean())
    True
    """

    def __init__(
        self,
        model,
        normal_data=None,
        *,
        poison_label=None,
        learning_rate=0.05,
        gamma=0.2,
        rounds=5,
        gradient="exact",
        delta=0.01,
        value_range=None,
        rate=None,
        count=None,
        keep_clean=True,
        from_logits=None,
        logits_layer=None,
        batch_size=32,
        seed=0,
        verbose=0,
    ):
        self.model = model
        self._logits_fn = logit_function(model, from_logits, logits_layer)
        self.from_logits = from_logits
        self.logits_layer = getattr(logits_layer, "name", logits_layer)
        self.num_classes = _logit_width(model)
        self.learning_rate = _positive("learning_rate", learning_rate)
        self.gamma = _positive("gamma", gamma)
        self.rounds = validate_int("rounds", rounds, 1)
        if gradient not in GRADIENTS:
            raise ValueError(
                f"Expected `gradient` to be one of {GRADIENTS}. "
                f"Received: gradient={gradient!r}"
            )
        self.gradient = gradient
        self.delta = _positive("delta", delta)
        self.poison_label = (
            None
            if poison_label is None
            else validate_class(
                "poison_label", poison_label, self.num_classes,
                hint=" (the model's classes)",
            )
        )
        self.value_range = validate_value_range("value_range", value_range)
        self.rate, self.count = _rate_or_count(rate, count)
        if not isinstance(keep_clean, bool):
            raise TypeError(
                f"Expected `keep_clean` to be a bool. Received: keep_clean={keep_clean!r}"
            )
        self.keep_clean = keep_clean
        self.batch_size = validate_int("batch_size", batch_size, 1)
        self.seed = keyed_random.validate_seed(seed)
        self.verbose = validate_int("verbose", verbose, 0)
        self._normal_x, self._normal_y = self._check_normal_data(normal_data)
        if self.value_range is not None:
            self._check_normal_range(self.value_range)
        self.normal_size = len(self._normal_y)
        self.normal_sha256 = _fingerprint(self._normal_x, self._normal_y)
        self.poisons = None
        self.injection = None
        self._seed_images = None
        self._seed_labels = None
        self.stream_injection = None
        self._stream_seeds = None
        self._crafters = {}

    # ------------------------------------------------------------------
    # Checks.

    def _check_normal_data(self, normal_data):
        if normal_data is None:
            raise ValueError(
                "Expected `normal_data` = (x, y), the clean examples whose loss "
                "after one SGD step the poisons raise (the direct gradient "
                "method needs them). Received: normal_data=None"
            )
        if not isinstance(normal_data, (tuple, list)) or len(normal_data) != 2:
            raise TypeError(
                "Expected `normal_data` = (x, y), a pair of arrays. Received: "
                f"normal_data of type {type(normal_data).__name__}"
                + (
                    f" with {len(normal_data)} items"
                    if isinstance(normal_data, (tuple, list))
                    else ""
                )
                + ". Read a tf.data.Dataset into arrays first, e.g. "
                "`x, y = next(iter(ds.batch(m).as_numpy_iterator()))`."
            )
        x, y = (np.asarray(part) for part in normal_data)
        labels = to_class_indices(y, "normal_data labels")[0]
        if len(x) != len(labels):
            raise ValueError(
                "Expected `normal_data` images and labels of the same length. "
                f"Received: {len(x)} images, {len(labels)} labels"
            )
        if len(x) == 0:
            raise ValueError(
                "Expected `normal_data` with at least one example. Received: "
                "0 examples"
            )
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise TypeError(
                "Expected `normal_data` images of a numeric dtype. Received: "
                f"dtype {x.dtype}"
            )
        expected = _input_shape(self.model)
        if expected is not None and not _shape_matches(x.shape[1:], expected):
            raise ValueError(
                f"Expected `normal_data` images of the model's input shape "
                f"{tuple(expected)}. Received: images of shape {x.shape[1:]}"
            )
        if labels.max() >= self.num_classes:
            raise ValueError(
                f"Expected `normal_data` labels in [0, {self.num_classes}) (the "
                f"model's classes). Received: a label {int(labels.max())}"
            )
        self._normal_dtype = x.dtype
        return x.astype("float32"), labels.astype("int32")

    def _check_normal_range(self, value_range):
        low, high = value_range
        x = self._normal_x
        if x.min() < low or x.max() > high:
            raise ValueError(
                f"Expected `normal_data` images inside value_range=({low}, "
                f"{high}), the range the poisons are crafted in. Received: "
                f"values from {x.min()} to {x.max()}"
            )

    def _check_shape(self, x):
        if tuple(x.shape[1:]) != tuple(self._normal_x.shape[1:]):
            raise ValueError(
                "Expected images of the shape of `normal_data`, "
                f"{tuple(self._normal_x.shape[1:])}. Received: images of shape "
                f"{tuple(x.shape[1:])}"
            )
        if self.value_range is None and default_value_range(
            x.dtype
        ) != default_value_range(self._normal_dtype):
            # Without `value_range` each side's range comes from its dtype:
            # uint8 seeds in [0, 255] beside float normal images in [0, 1]
            # would be crafted on two scales (the normal set passing the
            # seeds' wider range check), a silent mismatch.
            raise ValueError(
                "Expected seed images of the dtype family of `normal_data` "
                f"({self._normal_dtype}, value range "
                f"{default_value_range(self._normal_dtype)}), or an explicit "
                "`value_range`. Received: images of dtype "
                f"{x.dtype} (value range {default_value_range(x.dtype)}); "
                "convert one to the other's scale or pass `value_range`"
            )

    # ------------------------------------------------------------------
    # The hooks of `ClassOrientedPoison` (seed choice, labels, crafting).

    def _eligible_classes(self):
        if self.poison_label is None:
            return list(range(self.num_classes))
        return [k for k in range(self.num_classes) if k != self.poison_label]

    def _check_seed_labels(self, seed_labels):
        if self.poison_label is None:
            return
        own = np.flatnonzero(seed_labels == self.poison_label)
        if len(own):
            raise ValueError(
                "Expected seeds from classes other than `poison_label` (a seed "
                "of that class would keep its label). Received: "
                f"{len(own)} of {len(seed_labels)} seeds of class "
                f"poison_label={self.poison_label} (positions {own[:5].tolist()}…)"
            )

    def _plan(self, seed_labels):
        if self.poison_label is None:
            labels = (seed_labels + 1) % self.num_classes
        else:
            labels = np.full((len(seed_labels),), self.poison_label)
        return labels, np.zeros((len(seed_labels),), bool), labels.copy()

    def craft(self, x, y, indices=None, model=None):
        """Crafts a DGM poison from every seed `(x[i], y[i])`.

        Args:
            x: array of seed images `(m, ...)`, inside `value_range`, with
                the shape of `normal_data`'s images.
            y: their true labels, sparse `(m,)` or one-hot `(m, K)`.
            indices: int array `(m,)` or `None`, where the seeds sit in
                their data set (recorded as the poisons' `source_indices`).
                Defaults to `0 … m-1`.
            model: a `keras.Model` to craft against instead of the attack's
                own (used to re-craft against a model being trained).
                Defaults to `None`.

        Returns:
            A `PoisonSet` with images in `x`'s dtype; `steps_taken` is
            `rounds` for every poison.
        """
        x = np.asarray(x)
        self._check_shape(x)
        return super().craft(x, y, indices=indices, model=model)

    def _step_size(self):
        return "gamma", self.gamma

    def _crafter(self, model, value_range):
        model = self.model if model is None else model
        key = (id(model), value_range)
        if key not in self._crafters:
            self._check_normal_range(value_range)
            logits_fn = (
                self._logits_fn
                if model is self.model
                else logit_function(model, self.from_logits, self.logits_layer)
            )
            self._crafters[key] = OneStepCrafter(
                logits_fn,
                model.trainable_variables,
                self._normal_x,
                self._normal_y,
                learning_rate=self.learning_rate,
                gamma=self.gamma,
                rounds=self.rounds,
                gradient=self.gradient,
                delta=self.delta,
                value_range=value_range,
            )
        return self._crafters[key]

    # ------------------------------------------------------------------
    # The objective, for inspection.

    def normal_loss(self, x, y):
        """The normal-set loss after one SGD step on each `(x[i], y[i])` alone.

        This is the objective `J` the poisons raise: for each row, the
        model's weights take one SGD step (learning rate `learning_rate`)
        on that example only, then the mean cross-entropy over
        `normal_data` is measured. The model's weights are not changed.

        Args:
            x: images `(n, ...)` with the shape of `normal_data`'s images.
            y: the labels they are trained with (poison labels), sparse
                `(n,)` or one-hot `(n, K)`.

        Returns:
            float32 array `(n,)`.
        """
        return self._evaluate(x, y, "loss")

    def normal_loss_gradient(self, x, y):
        """The gradient of `normal_loss` with respect to each image.

        Computed as the attack crafts: exactly (`gradient="exact"`) or by
        forward differences of size `delta` (`"finite_difference"`).

        Args:
            x: images `(n, ...)` with the shape of `normal_data`'s images.
            y: the labels they are trained with, sparse `(n,)` or one-hot.

        Returns:
            float32 array of `x`'s shape.
        """
        return self._evaluate(x, y, "gradient")

    def _evaluate(self, x, y, what):
        x = np.asarray(x)
        self._check_shape(x)
        labels = to_class_indices(y, "y")[0]
        if len(labels) != len(x):
            raise ValueError(
                "Expected `x` and `y` to have the same number of examples. "
                f"Received: len(x)={len(x)}, len(y)={len(labels)}"
            )
        if len(labels) and labels.max() >= self.num_classes:
            raise ValueError(
                f"Expected labels in [0, {self.num_classes}) (the model's "
                f"classes). Received: a label {int(labels.max())}"
            )
        crafter = self._crafter(None, self._value_range_for(x))
        return crafter.evaluate(
            x.astype("float32"), labels.astype("int32"), what, self.batch_size
        )

    # ------------------------------------------------------------------
    # Configuration.

    def get_config(self):
        """The crafting hyper-parameters and a fingerprint of the normal set.

        Neither the model nor the normal images are part of it; pass them
        again to `from_config`.
        """
        return {
            "poison_label": self.poison_label,
            "learning_rate": self.learning_rate,
            "gamma": self.gamma,
            "rounds": self.rounds,
            "gradient": self.gradient,
            "delta": self.delta,
            "value_range": None if self.value_range is None else list(self.value_range),
            "rate": self.rate,
            "count": self.count,
            "keep_clean": self.keep_clean,
            "from_logits": self.from_logits,
            "logits_layer": self.logits_layer,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "verbose": self.verbose,
            "normal_size": self.normal_size,
            "normal_sha256": self.normal_sha256,
        }

    @classmethod
    def from_config(cls, config, model, normal_data=None):
        """Re-creates the attack against `model` and `normal_data` from `get_config()`.

        Args:
            config: a dict from `get_config()` (e.g. a `PoisonSet`'s
                `config`, whose `"attack"` key is ignored).
            model: the `keras.Model` to craft against.
            normal_data: `(x, y)`, the normal set; it must be the one the
                config was made with (its fingerprint is checked).

        Returns:
            A `DirectGradientPoison`.
        """
        config = dict(config)
        config.pop("attack", None)
        size = config.pop("normal_size", None)
        fingerprint = config.pop("normal_sha256", None)
        attack = cls(model, normal_data, **config)
        if fingerprint is not None and fingerprint != attack.normal_sha256:
            raise ValueError(
                "Expected the `normal_data` this config was made with "
                f"({size} examples, sha256 {fingerprint[:12]}…). Received: "
                f"{attack.normal_size} examples, sha256 {attack.normal_sha256[:12]}…"
            )
        return attack

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}(model={self.model.name!r}, {arguments})"


class OneStepCrafter:
    """The batched DGM computation: normal-set loss after one SGD step, its gradient, crafting.

    Not public: `DirectGradientPoison` builds one per model and value range.
    Every per-poison quantity runs as a `tf.map_fn` over the rows of a batch
    inside one `tf.function` (traced once per image shape), split over the
    replicas of the active `tf.distribute` strategy.

    Args:
        logits_fn: callable from images to logits (see `logit_function`).
        variables: the model's trainable variables: the weights the SGD
            step moves.
        normal_x: float32 array, the normal images.
        normal_y: int32 array, their labels.
        learning_rate, gamma, rounds, gradient, delta: as for
            `DirectGradientPoison`.
        value_range: `(low, high)`, every step is clipped to it.
    """

    def __init__(
        self, logits_fn, variables, normal_x, normal_y, *, learning_rate, gamma,
        rounds, gradient, delta, value_range,
    ):
        self.logits_fn = logits_fn
        self.variables = list(variables)
        if not self.variables:
            raise ValueError(
                "Expected a model with trainable weights: the direct gradient "
                "method differentiates through one SGD step on them. Received: "
                "a model with none"
            )
        with tf.init_scope():
            self.normal_x = tf.constant(normal_x, tf.float32)
            self.normal_y = tf.constant(normal_y, tf.int32)
        self.learning_rate = float(learning_rate)
        self.gamma = float(gamma)
        self.rounds = int(rounds)
        self.gradient = gradient
        self.delta = float(delta)
        self.clip_low, self.clip_high = (float(v) for v in value_range)
        self._fns = {}
        self._distributed = {}

    # ------------------------------------------------------------------
    # Per poison (one image, one label), traced inside tf.map_fn.

    def _cross_entropy(self, x, y):
        logits = tf.cast(self.logits_fn(x), tf.float32)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)

    def _loss_after_step(self, x, y):
        """J(x): mean normal-set loss after one SGD step on `(x, y)` alone."""
        weights = [tf.convert_to_tensor(v.value) for v in self.variables]
        with tf.GradientTape() as tape:
            tape.watch(weights)
            with keras.StatelessScope(state_mapping=list(zip(self.variables, weights))):
                loss = tf.reduce_sum(self._cross_entropy(x[None], y[None]))
        grads = tape.gradient(
            loss, weights, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        stepped = [w - self.learning_rate * g for w, g in zip(weights, grads)]
        with keras.StatelessScope(state_mapping=list(zip(self.variables, stepped))):
            return tf.reduce_mean(self._cross_entropy(self.normal_x, self.normal_y))

    def _exact(self, x, y):
        # The inner tape (the SGD step) runs under the outer one, which so
        # differentiates through it: second order, exact.
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = self._loss_after_step(x, y)
        return loss, tape.gradient(loss, x)

    def _finite_difference(self, x, y):
        loss = self._loss_after_step(x, y)
        shape = tf.shape(x)
        d = tf.size(x)
        shifted = tf.reshape(x, [1, -1]) + self.delta * tf.eye(d)
        # The step actually taken in float32, not δ itself.
        taken = tf.linalg.diag_part(shifted) - tf.reshape(x, [-1])
        losses = tf.map_fn(
            lambda row: self._loss_after_step(tf.reshape(row, shape), y),
            shifted,
            fn_output_signature=tf.float32,
        )
        return loss, tf.reshape((losses - loss) / taken, shape)

    def _loss_and_gradient(self, x, y):
        if self.gradient == "exact":
            return self._exact(x, y)
        return self._finite_difference(x, y)

    # ------------------------------------------------------------------
    # Per batch.

    def _batch(self, x, y, what):
        x = tf.cast(x, tf.float32)
        y = tf.cast(y, tf.int32)
        if what == "loss":
            return tf.map_fn(
                lambda row: self._loss_after_step(*row), (x, y),
                fn_output_signature=tf.float32,
            )
        gradient_of = lambda xs: tf.map_fn(  # noqa: E731
            lambda row: self._loss_and_gradient(*row)[1], (xs, y),
            fn_output_signature=tf.float32,
        )
        if what == "gradient":
            return gradient_of(x)

        def step(r, xs):
            moved = xs + self.gamma * tf.sign(gradient_of(xs))
            return r + 1, tf.clip_by_value(moved, self.clip_low, self.clip_high)

        _, x = tf.while_loop(lambda r, xs: r < self.rounds, step, (tf.constant(0), x))
        return x

    def _fn(self, what, image_shape):
        key = (what, tuple(image_shape))
        if key not in self._fns:
            signature = [
                tf.TensorSpec((None,) + tuple(image_shape), tf.float32),
                tf.TensorSpec((None,), tf.int32),
            ]
            self._fns[key] = tf.function(
                lambda x, y: self._batch(x, y, what), input_signature=signature
            )
        return self._fns[key]

    def _run(self, what, x, y):
        strategy = tf.distribute.get_strategy()
        if strategy.num_replicas_in_sync <= 1:
            return self._fn(what, x.shape[1:])(x, y)
        # Split one batch over the replicas and gather it back in order.
        if what not in self._distributed:

            def run(xs, ys):
                per_replica = strategy.run(lambda a, b: self._batch(a, b, what), args=(xs, ys))
                return strategy.gather(per_replica, axis=0)

            self._distributed[what] = tf.function(run, reduce_retracing=True)
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(len(x))
        (distributed,) = list(strategy.experimental_distribute_dataset(dataset))
        return self._distributed[what](*distributed)

    def evaluate(self, x, y, what, batch_size):
        """`"loss"` or `"gradient"` for every row, as NumPy."""
        out = [
            self._run(what, x[start : start + batch_size], y[start : start + batch_size]).numpy()
            for start in range(0, len(x), batch_size)
        ]
        if not out:
            return np.zeros((0,) if what == "loss" else x.shape, "float32")
        return np.concatenate(out)

    def craft(self, x, true_class, target_class, ascend, batch_size=32, verbose=0):
        """Crafts every seed with label `target_class`; returns `(images, steps_taken)`.

        The signature is `SignedGradientCrafter.craft`'s, so
        `ClassOrientedPoison.craft` drives both; `true_class` and `ascend`
        are not used (the poison label is `target_class`).
        """
        x = np.asarray(x, "float32")
        labels = np.asarray(target_class, "int32")
        n = len(x)
        progress = keras.utils.Progbar(n, verbose=verbose, unit_name="image")
        images = []
        for start in range(0, n, batch_size):
            batch = (x[start : start + batch_size], labels[start : start + batch_size])
            images.append(self._run("craft", *batch).numpy())
            progress.add(len(batch[0]))
        if not images:
            return np.zeros_like(x), np.zeros((0,), "int32")
        return np.concatenate(images), np.full((n,), self.rounds, "int32")


# ----------------------------------------------------------------------
# Helpers.


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            f"Expected `{name}` to be a number > 0. Received: {name}={value!r}"
        )
    if not (value > 0 and np.isfinite(value)):
        raise ValueError(f"Expected `{name}` > 0. Received: {name}={value!r}")
    return float(value)


def _rate_or_count(rate, count):
    if count is None:
        if rate is None:
            rate = 0.1
        if isinstance(rate, (int, float, np.integer, np.floating)) and not (
            isinstance(rate, bool) or 0 < rate <= 1
        ):
            raise ValueError(f"Expected `rate` in (0, 1]. Received: rate={rate}")
        return validate_rate("rate", rate), None
    if rate is not None:
        raise ValueError(
            f"Expected one of `rate` or `count`, not both. Received: "
            f"rate={rate}, count={count}"
        )
    return None, validate_int("count", count, 1)


def _input_shape(model):
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        return None
    return tuple(inputs[0].shape[1:])


def _shape_matches(shape, expected):
    return len(shape) == len(expected) and all(
        e is None or s == e for s, e in zip(shape, expected)
    )


def _fingerprint(x, y):
    digest = hashlib.sha256()
    digest.update(str(x.shape).encode())
    digest.update(np.ascontiguousarray(x, "float32").tobytes())
    digest.update(np.ascontiguousarray(y, "int64").tobytes())
    return digest.hexdigest()
