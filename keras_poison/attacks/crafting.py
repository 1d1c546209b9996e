"""Batched signed-gradient crafting on a model's logits (GradientTape).

The class-oriented attacks (`class_oriented.py`) craft each poison with a
few signed gradient steps on the logits of a trained model. This module does
the work for a whole batch at once, inside one `tf.function`:

* `logit_function(model, ...)`: the pre-softmax output of a Keras model;
* `SignedGradientCrafter`: runs Algorithm 1 (descent on
  `λ·f_target − f_true`, with its per-example early break) or the ascent
  branch of Algorithm 2 (eq. 17) for every example of a batch, on the
  active `tf.distribute` strategy, with a `keras.utils.Progbar`.

References are to Zhao & Lao, "Class-Oriented Poisoning Attack"
(`shared/seeds/003_…txt`).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_poison._validation import renamed_argument
from keras_poison._validation import validate_value_range

OBJECTIVES = ("two_logit", "all_logits")


def logit_function(model, from_logits=None, logits_layer=None):
    """Returns a callable mapping a batch of images to the model's logits.

    The attacks step on logits, not probabilities (Algorithm 1 differentiates
    `f_y`, "the logit output"), so for a model that ends in a softmax the
    pre-activation values are taken.

    Args:
        model: a built `keras.Model` with one image input.
        from_logits: `True` if the model's output already are logits,
            `False` if they are probabilities, `None` to decide from the
            last layer (a `"linear"` activation means logits). Defaults to
            `None`.
        logits_layer: name (or instance) of the layer whose output are the
            logits, for models where they cannot be found automatically.
            Defaults to `None`.

    Returns:
        A callable `f(x) -> logits` that runs the model in inference mode.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Expected `model` to be a keras.Model. "
            f"Received: model of type {type(model).__name__}"
        )
    if from_logits not in (None, True, False):
        raise TypeError(
            f"Expected `from_logits` to be True, False or None. Received: "
            f"from_logits={from_logits!r}"
        )
    if from_logits and logits_layer is None:
        return _InferenceCall(model)
    inputs = _single_input(model)
    if logits_layer is not None:
        layer = (
            model.get_layer(logits_layer)
            if isinstance(logits_layer, str)
            else logits_layer
        )
        return _InferenceCall(keras.Model(inputs, layer.output))

    last = model.layers[-1]
    activation = _activation_name(last)
    if activation == "softmax":
        if isinstance(last, keras.layers.Dense):
            # Softmax fused into the last Dense: redo its affine part.
            features = keras.Model(inputs, last.input)
            return _DenseLogits(features, last)
        if isinstance(last, (keras.layers.Activation, keras.layers.Softmax)):
            return _InferenceCall(keras.Model(inputs, last.input))
    if activation == "linear" and from_logits is None:
        return _InferenceCall(model)
    raise ValueError(
        f"Cannot find the logits of model {model.name!r}: its last layer "
        f"{last.name!r} ({type(last).__name__}, activation={activation!r}) is "
        "neither a softmax nor linear. Pass `logits_layer=` the name of the "
        "layer whose output are the logits, or `from_logits=True` if the "
        "model's output are logits."
    )


def _single_input(model):
    try:
        inputs = model.inputs
    except AttributeError:
        inputs = None
    if not inputs:
        raise ValueError(
            f"Cannot read the logits inside model {model.name!r}: it has no "
            "symbolic inputs (a subclassed or unbuilt model). Build it with "
            "keras.Input, or pass `from_logits=True` if its output are logits."
        )
    if len(inputs) != 1:
        raise ValueError(
            f"Expected a model with one image input. Received: model "
            f"{model.name!r} with {len(inputs)} inputs"
        )
    # A single tensor, not a list, so calls with one tensor match the structure.
    return inputs[0]


def _activation_name(layer):
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    return getattr(activation, "__name__", str(activation))


class _InferenceCall:
    def __init__(self, model):
        self.model = model

    def __call__(self, x):
        return self.model(x, training=False)


class _DenseLogits:
    def __init__(self, features, dense):
        self.features = features
        self.dense = dense

    def __call__(self, x):
        logits = keras.ops.matmul(self.features(x, training=False), self.dense.kernel)
        if self.dense.use_bias:
            logits = logits + self.dense.bias
        return logits


class SignedGradientCrafter:
    """Crafts a batch of poisons with signed gradient steps on logits.

    Per example, with `f` the logits, `o` its true class and `t` its target:

    * descent examples follow Algorithm 1: the initial step
      `x_0 = clip(x − ε·sign(∇L))`, then up to `steps` further steps
      `x_{t+1} = clip(x_t − ε·sign(∇L))` with `L = λ·f_t − f_o` (eq. 14,
      `objective="two_logit"`) or `L = λ·Σ_{k≠o} f_k − f_o` (eqs. 11–12,
      `"all_logits"`). The example stops (keeping `x_{t+1}`, as the
      algorithm does) once `f_t(x_{t+1}) > f_t(x_t)` or
      `f_o(x_{t+1}) < f_o(x_t)`.
    * ascent examples follow the "otherwise" branch of Algorithm 2 (eq. 17):
      `x_{t+1} = clip(x_t + ε·sign(∇f_o))` for the initial step and all
      `steps` further steps, with no early break.

    The algorithm's initial step has no clip; here it is clipped too so that
    every poison stays in `value_range`. The early break is a mask over the
    batch: a stopped example keeps its image and leaves the batch (only
    active rows are run through the model), and the loop ends when no
    example is active.

    Args:
        logits_fn: callable from images to logits (see `logit_function`).
        epsilon: float > 0, the step size ε in image units.
        steps: int >= 1, the maximum number of steps after the initial one.
        lam: float >= 0, the weight λ of the target term.
        objective: `"two_logit"` (eq. 14) or `"all_logits"` (eq. 11).
        value_range: `(low, high)`, the images' valid range (Keras' name);
            every step is clipped to it. Required.
        early_break: bool, whether descent examples stop early as in
            Algorithm 1. Defaults to `True`.
        clip_values: deprecated alias of `value_range` (warns with a
            `DeprecationWarning`). Defaults to `None`.
    """

    def __init__(
        self,
        logits_fn,
        epsilon,
        steps,
        lam,
        objective,
        value_range=None,
        early_break=True,
        *,
        clip_values=None,
    ):
        value_range = renamed_argument(
            "SignedGradientCrafter", "value_range", value_range, "clip_values", clip_values
        )
        if value_range is None:
            raise TypeError(
                "Expected `value_range` = (low, high), the images' valid range. "
                "Received: value_range=None"
            )
        self.logits_fn = logits_fn
        self.epsilon = float(epsilon)
        self.steps = int(steps)
        self.lam = float(lam)
        self.objective = objective
        self.value_range = validate_value_range("value_range", value_range)
        self.clip_low, self.clip_high = self.value_range
        self.early_break = bool(early_break)
        # Traced once per image shape: the batch axis is left open so the
        # last, partial batch of every call reuses the same graph.
        self._batch_fns = {}
        self._distributed_fn = None

    def craft(
        self, x, true_class, target_class, ascend, batch_size=128, verbose=0,
        output=None,
    ):
        """Crafts every example; returns `(images, steps_taken)` as NumPy.

        Memory beyond `x` and the result is that of one batch: each batch is
        cast to float32 as it goes to the model, and with `output` set it is
        turned into its final form before the next batch starts (a uint8
        ImageNet poison set then costs 1 byte per value, not 4).

        Args:
            x: array of seed images, shape `(n, ...)`, of any real dtype
                (cast to float32 one batch at a time).
            true_class: int32 array `(n,)`, each seed's class `o`.
            target_class: int32 array `(n,)`, the class `t` whose logit is
                lowered (ignored for ascent examples).
            ascend: bool array `(n,)`, True for eq. 17's ascent branch.
            batch_size: examples per `GradientTape` batch.
            verbose: 0 silent, 1 a progress bar.
            output: `None`, or a `(function, dtype)` pair: each crafted
                float32 batch is passed through `function` and stored in an
                array of `dtype` (e.g. rounding back to the seeds' uint8).
                Defaults to `None` (float32 images).

        Returns:
            `(images, steps_taken)`: crafted images (float32, or `output`'s
            dtype) and, per example, the number of signed steps applied
            (initial included).
        """
        x = np.asarray(x)
        if output is None:
            convert, dtype = (lambda images: images), np.float32
        else:
            convert, dtype = output
        true_class = np.asarray(true_class, "int32")
        target_class = np.asarray(target_class, "int32")
        ascend = np.asarray(ascend, bool)
        n = len(x)
        progress = keras.utils.Progbar(n, verbose=verbose, unit_name="image")
        strategy = tf.distribute.get_strategy()
        images = np.empty(x.shape, dtype)
        steps_taken = np.zeros((n,), "int32")
        for start in range(0, n, batch_size):
            batch = tuple(
                array[start : start + batch_size]
                for array in (x, true_class, target_class, ascend)
            )
            batch = (np.asarray(batch[0], "float32"),) + batch[1:]
            if strategy.num_replicas_in_sync > 1:
                crafted, taken = self._run_distributed(strategy, batch)
            else:
                crafted, taken = self._batch_fn(x.shape[1:])(*batch)
            stop = start + len(batch[0])
            images[start:stop] = convert(crafted.numpy())
            steps_taken[start:stop] = taken.numpy()
            progress.add(len(batch[0]))
        return images, steps_taken

    def _batch_fn(self, image_shape):
        if image_shape not in self._batch_fns:
            signature = [
                tf.TensorSpec((None,) + tuple(image_shape), tf.float32),
                tf.TensorSpec((None,), tf.int32),
                tf.TensorSpec((None,), tf.int32),
                tf.TensorSpec((None,), tf.bool),
            ]
            self._batch_fns[image_shape] = tf.function(
                self._craft_batch, input_signature=signature
            )
        return self._batch_fns[image_shape]

    def _run_distributed(self, strategy, batch):
        """Splits one batch over the replicas and gathers it back in order."""
        if self._distributed_fn is None:

            def run(*arrays):
                per_replica = strategy.run(self._craft_batch, args=arrays)
                return tuple(strategy.gather(value, axis=0) for value in per_replica)

            self._distributed_fn = tf.function(run, reduce_retracing=True)
        dataset = tf.data.Dataset.from_tensor_slices(batch).batch(len(batch[0]))
        (distributed,) = list(strategy.experimental_distribute_dataset(dataset))
        return self._distributed_fn(*distributed)

    # ------------------------------------------------------------------
    # The batched algorithm (traced once per batch shape).

    def _logits_and_gradient(self, x, true_class, target_class, ascend):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = tf.cast(self.logits_fn(x), tf.float32)
            loss = self._loss(logits, true_class, target_class, ascend)
        # A vector target's gradient is that of its sum; examples are
        # independent (inference mode), so row i is ∇ of example i's loss.
        return logits, tape.gradient(loss, x)

    def _loss(self, logits, true_class, target_class, ascend):
        """Per-example loss L that the step *descends* (eqs. 11, 14, 17)."""
        f_true = _pick(logits, true_class)
        if self.objective == "two_logit":
            others = _pick(logits, target_class)
        else:
            others = tf.reduce_sum(logits, axis=-1) - f_true
        descent = self.lam * others - f_true
        # Ascent on f_o (eq. 17) is descent on −f_o.
        return tf.where(ascend, -f_true, descent)

    def _step(self, x, gradient):
        moved = x - self.epsilon * tf.sign(gradient)
        return tf.clip_by_value(moved, self.clip_low, self.clip_high)

    def _craft_batch(self, x, true_class, target_class, ascend):
        x = tf.cast(x, tf.float32)
        true_class = tf.cast(true_class, tf.int32)
        target_class = tf.cast(target_class, tf.int32)
        ascend = tf.cast(ascend, tf.bool)
        args = (true_class, target_class, ascend)

        # Initialize: x_{p0} = x_o ∓ ε·sign(∇L(x_o)).
        _, gradient = self._logits_and_gradient(x, *args)
        x = self._step(x, gradient)
        logits, gradient = self._logits_and_gradient(x, *args)
        active = tf.ones_like(ascend)
        steps_taken = tf.ones_like(true_class)

        def keep_going(t, x, logits, gradient, active, steps_taken):
            return tf.logical_and(t < self.steps, tf.reduce_any(active))

        def one_step(t, x, logits, gradient, active, steps_taken):
            # Only the rows still active go through the model: stopped rows
            # would otherwise cost a forward and backward pass every step.
            rows = tf.where(active)
            index = rows[:, 0]
            true_a, target_a = tf.gather(true_class, index), tf.gather(target_class, index)
            ascend_a = tf.gather(ascend, index)
            logits_a = tf.gather(logits, index)
            x_next = self._step(tf.gather(x, index), tf.gather(gradient, index))
            logits_next, gradient_next = self._logits_and_gradient(
                x_next, true_a, target_a, ascend_a
            )
            broke = tf.zeros_like(ascend_a)
            if self.early_break:
                # Algorithm 1: break if f_ys rose or f_yo fell (x_{t+1} is kept).
                target_rose = _pick(logits_next, target_a) > _pick(logits_a, target_a)
                true_fell = _pick(logits_next, true_a) < _pick(logits_a, true_a)
                broke = tf.logical_and(
                    tf.logical_not(ascend_a), tf.logical_or(target_rose, true_fell)
                )
            x = tf.tensor_scatter_nd_update(x, rows, x_next)
            logits = tf.tensor_scatter_nd_update(logits, rows, logits_next)
            gradient = tf.tensor_scatter_nd_update(gradient, rows, gradient_next)
            steps_taken = tf.tensor_scatter_nd_add(
                steps_taken, rows, tf.ones_like(true_a)
            )
            active = tf.tensor_scatter_nd_update(active, rows, tf.logical_not(broke))
            return t + 1, x, logits, gradient, active, steps_taken

        _, x, _, _, _, steps_taken = tf.while_loop(
            keep_going,
            one_step,
            (tf.constant(0), x, logits, gradient, active, steps_taken),
        )
        return x, steps_taken


def _pick(logits, classes):
    """`logits[i, classes[i]]` for every row i."""
    return tf.gather(logits, classes, axis=1, batch_dims=1)
