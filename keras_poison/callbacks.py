"""Keras callbacks for training under class-oriented poisoning.

* `ClassOrientedMetrics` writes CTT (eqs. 7–9), CFT per class (eq. 10) and
  accuracy on a held-out set into `logs` every epoch, so `History`,
  `CSVLogger` and `TensorBoard` record them.
* `RecraftPoisons` re-crafts an applied `SupplanterPoison`/`VictimPoison`
  against the model being trained every few epochs; the `tf.data` stream
  the attack built picks the new poisons up without being rebuilt.
* `PacedPoisons` releases an applied attack's poisons a step at a time,
  backing off whenever a shadow `PoisonMonitor` on the attacker's own data
  alarms: the adaptive attack against the monitor (issue 20).
"""

import warnings

import keras
import numpy as np

from keras_poison import metrics
from keras_poison._validation import to_class_indices
from keras_poison._validation import validate_class
from keras_poison._validation import validate_int
from keras_poison._validation import validate_number
from keras_poison.defences.callbacks import PoisonMonitor


class ClassOrientedMetrics(keras.callbacks.Callback):
    """Logs CTT, per-class CFT and accuracy on a held-out set every epoch.

    The rates compare the model's predictions now with its predictions
    before poisoning (eqs. 7–10 of the class-oriented paper), read at the
    start of training unless given. Keys written to `logs` (with `prefix`):
    `accuracy`, `ctt` (eq. 9, when `supplanter` is set), and `cft_<class>`
    for every class (eq. 10, positive = harm). Put this callback before
    `CSVLogger` or `TensorBoard` in the list so they see the new keys.

    Args:
        x: held-out images.
        y: their true labels, sparse or one-hot.
        supplanter: int or `None`, the COEG supplanter class for the CTT
            rate. Defaults to `None` (no CTT).
        predictions_before: int array or `None`, the predicted classes on
            `x` of the model before poisoning. `None` predicts them with the
            model at the start of training. Defaults to `None`.
        class_names: list of str or `None`, names used in the `cft_` keys
            instead of class indices. Defaults to `None`.
        prefix: str put before every key. Defaults to `"holdout_"`.
        batch_size: int, prediction batch size. Defaults to `256`.

    Example:

    >>> model = keras_poison.models.lenet5(input_shape=(12, 12, 1), seed=0)
    >>> x = np.random.default_rng(0).uniform(size=(40, 12, 12, 1)).astype("float32")
    >>> y = np.arange(40) % 10
    >>> callback = ClassOrientedMetrics(x, y, supplanter=4)
    >>> history = model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    >>> sorted(k for k in history.history if k.startswith("holdout_"))[:3]
    ['holdout_accuracy', 'holdout_cft_0', 'holdout_cft_1']
    """

    def __init__(
        self,
        x,
        y,
        supplanter=None,
        predictions_before=None,
        class_names=None,
        prefix="holdout_",
        batch_size=256,
    ):
        super().__init__()
        self.x = np.asarray(x)
        self.y, _ = to_class_indices(y, "y")
        if len(self.x) != len(self.y) or len(self.y) == 0:
            raise ValueError(
                "Expected `x` and `y` with the same, non-zero number of "
                f"examples. Received: len(x)={len(self.x)}, len(y)={len(self.y)}"
            )
        # The model's classes are known at `on_train_begin`; check the type now.
        self.supplanter = None if supplanter is None else validate_class(
            "supplanter", supplanter, None
        )
        self.predictions_before = (
            None if predictions_before is None else np.asarray(predictions_before)
        )
        if self.predictions_before is not None and self.predictions_before.shape != self.y.shape:
            raise ValueError(
                f"Expected `predictions_before` of shape {self.y.shape}. "
                f"Received: shape {self.predictions_before.shape}"
            )
        self.class_names = None if class_names is None else list(class_names)
        self.prefix = str(prefix)
        self.batch_size = validate_int("batch_size", batch_size, 1)
        self._before = None

    def _scores(self):
        return np.asarray(self.model.predict(self.x, batch_size=self.batch_size, verbose=0))

    def on_train_begin(self, logs=None):
        # The width of what the model predicts: works for subclassed and
        # lazily built models too, which have no `outputs` before a call.
        scores = self._scores()
        num_classes = int(scores.shape[-1]) if scores.ndim == 2 else 1
        if num_classes < 2:
            raise ValueError(
                "ClassOrientedMetrics needs a model that outputs one score per "
                "class, for two classes or more. Received: predictions of shape "
                f"{scores.shape} (a single sigmoid output?)"
            )
        self._num_classes = num_classes
        if self.supplanter is not None:
            validate_class("supplanter", self.supplanter, num_classes)
        if self.class_names is not None and len(self.class_names) != num_classes:
            raise ValueError(
                f"Expected {num_classes} `class_names`. Received: {len(self.class_names)}"
            )
        self._before = (
            np.argmax(scores, axis=-1) if self.predictions_before is None
            else self.predictions_before
        )

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        scores = self._scores()
        k = self._num_classes
        names = self.class_names or [str(c) for c in range(k)]
        if not np.all(np.isfinite(scores)):
            # argmax would read NaN rows as class 0: a diverged model would
            # log a plausible accuracy and no CTT or CFT at all.
            warnings.warn(
                f"ClassOrientedMetrics: the model predicted NaN or infinite scores "
                f"at epoch {epoch + 1}; its metrics are logged as NaN.",
                stacklevel=2,
            )
            keys = ["accuracy"] + (["ctt"] if self.supplanter is not None else [])
            for key in keys + [f"cft_{name}" for name in names]:
                logs[self.prefix + key] = float("nan")
            return
        after = np.argmax(scores, axis=-1)
        logs[self.prefix + "accuracy"] = metrics.accuracy(self.y, after)
        if self.supplanter is not None:
            ctt = metrics.ctt_rate(self.y, self._before, after, self.supplanter, k)
            logs[self.prefix + "ctt"] = ctt.overall
        cft = metrics.cft_rate(self.y, self._before, after, k)
        for name, rate in zip(names, cft):
            logs[f"{self.prefix}cft_{name}"] = float(rate)

    def get_config(self):
        # The held-out arrays are data, not configuration.
        return {
            "supplanter": self.supplanter,
            "class_names": self.class_names,
            "prefix": self.prefix,
            "batch_size": self.batch_size,
        }


def _check_one_pass(callback, epoch, injection, passes_before, what):
    """Raises unless `epoch` read exactly one pass of `injection`; returns its pass count.

    A callback that changes the poisons between epochs (re-crafts them, or
    releases more) holds only if each epoch is one fresh pass: through
    `.repeat()` or `steps_per_epoch`, tf.data prepares the next pass ahead
    with the old poisons, and the change arrives an epoch late.
    """
    passes = injection.passes - passes_before
    if passes != 1:
        raise RuntimeError(
            f"{callback}: epoch {epoch + 1} read {passes} passes of the "
            f"attack's poisons, not 1, so what it trained on is not what was "
            f"{what}. Give `fit` the stream `dataset.apply(attack)` built, "
            "without `.repeat()` or `steps_per_epoch` (tf.data prepares a "
            "repeated stream's next pass ahead, with the old poisons), and do "
            "not read it again within the epoch (as validation data, say)."
        )
    return injection.passes


class RecraftPoisons(keras.callbacks.Callback):
    """Re-crafts an applied class-oriented attack against the live model.

    Every `every` epochs, at the end of the epoch, the attack's poisons are
    crafted again from the same seeds against `self.model` (the model being
    trained) and written into the `tf.data` stream that `attack.transform`
    returned, which reads them from its next pass on. Each epoch must be one
    pass over that stream (no `.repeat()` or `steps_per_epoch`: tf.data
    would prepare the next pass ahead with the old poisons); an epoch that
    was not raises an error.

    Args:
        attack: a `SupplanterPoison` or `VictimPoison` already applied to
            the training dataset (or to arrays with `poison`).
        every: int >= 1, re-craft every this many epochs. Defaults to `1`.
        verbose: 0 silent, 1 a line per re-craft. Defaults to `0`.

    Example:

    >>> model = keras_poison.models.lenet5(input_shape=(12, 12, 1), seed=0)
    >>> x = np.random.default_rng(0).uniform(size=(40, 12, 12, 1)).astype("float32")
    >>> y = np.arange(40) % 10
    >>> attack = keras_poison.SupplanterPoison(model, 4, epsilon=0.1, steps=2)
    >>> train_ds = tf.data.Dataset.from_tensor_slices((x, y)).apply(attack)
    >>> callback = RecraftPoisons(attack, every=1)
    >>> _ = model.fit(train_ds.batch(8), epochs=2, verbose=0, callbacks=[callback])
    >>> callback.recrafted_epochs
    [0, 1]
    """

    def __init__(self, attack, every=1, verbose=0):
        super().__init__()
        if not hasattr(attack, "recraft"):
            raise TypeError(
                "Expected `attack` to be a SupplanterPoison or VictimPoison. "
                f"Received: attack of type {type(attack).__name__}"
            )
        self.attack = attack
        self.every = validate_int("every", every, 1)
        self.verbose = validate_int("verbose", verbose, 0)
        self.recrafted_epochs = []

    def on_train_begin(self, logs=None):
        if getattr(self.attack, "stream_injection", None) is None:
            if self.attack.injection is not None:
                raise ValueError(
                    "RecraftPoisons re-crafts the poisons of a tf.data stream, and "
                    "this attack was applied only to arrays (`poison`), which "
                    "re-crafting cannot change. Apply it to the training dataset, "
                    "`train_ds = dataset.apply(attack)`, and fit on that."
                )
            raise ValueError(
                "RecraftPoisons needs an attack that was applied to the "
                "training data: call `dataset.apply(attack)` before `fit`."
            )
        self.recrafted_epochs = []
        self._passes = self.attack.stream_injection.passes

    def on_epoch_end(self, epoch, logs=None):
        self._passes = _check_one_pass(
            "RecraftPoisons", epoch, self.attack.stream_injection, self._passes, "re-crafted"
        )
        if (epoch + 1) % self.every:
            return
        self.attack.recraft(self.model)
        self.recrafted_epochs.append(epoch)
        if self.verbose:
            print(f"Epoch {epoch + 1}: re-crafted {len(self.attack.poisons)} poisons")


class PacedPoisons(keras.callbacks.Callback):
    """Paces an applied class-oriented attack to stay under a `PoisonMonitor`.

    The adaptive attack against the monitor (Tramèr et al. 2020: attack the
    defence you know). The attacker knows that the victim fine-tunes under
    a `PoisonMonitor` with thresholds `max_accuracy_drop` and
    `max_share_increase`, but not the victim's trusted data. It runs a
    shadow monitor of its own, on its own held-out images `(x, y)`, with
    `margin` times those thresholds, and releases its poisons a step at a
    time: at the start of training `step` of them are injected; after each
    epoch one more step is released while the shadow stays quiet, and one
    step is withdrawn when it alarms. The stream that `attack.transform`
    built (`attack.stream_injection`) reads the released count each pass
    (`InjectPoisons.release`), so what the model trains on changes without
    rebuilding the pipeline.

    Each epoch must be one pass over that stream, so that what an epoch
    trained on is what was released before it: pass the attacked dataset
    to `fit` as it is, without `.repeat()` and `steps_per_epoch` (tf.data
    would prepare the next pass ahead, with the old count). An epoch that
    was not exactly one pass of it (a repeated stream, a shorter epoch, or
    training on another stream than the attack's) raises an error.

    `released` (a fraction of the poisons) is written to `logs` under
    `<prefix>released` each epoch, so `History` records the pace;
    `history` keeps `(epoch, released count, shadow alarmed)` tuples.

    Args:
        attack: a `SupplanterPoison` or `VictimPoison` already applied to
            the training dataset with `keep_clean=True`.
        x: the attacker's own held-out images (not the victim's).
        y: their labels, sparse or one-hot; every class present.
        num_classes: int >= 2, or `None` to read it from one-hot `y`.
        max_accuracy_drop: float in (0, 1], the victim monitor's threshold.
            Defaults to `0.2` (`PoisonMonitor`'s default).
        max_share_increase: float in (0, 1], the victim monitor's threshold.
            Defaults to `0.1` (`PoisonMonitor`'s default).
        margin: float in (0, 1], the share of the thresholds the shadow
            monitor uses (smaller: slower and safer). Defaults to `0.5`.
        step: float in (0, 1], the fraction of the poisons released or
            withdrawn per epoch. Defaults to `0.1`.
        prefix: str put before the log key. Defaults to `"paced_"`.

    Example:

    >>> model = keras_poison.models.lenet5(input_shape=(12, 12, 1), seed=0)
    >>> x = np.random.default_rng(0).uniform(size=(40, 12, 12, 1)).astype("float32")
    >>> y = np.arange(40) % 10
    >>> attack = keras_poison.SupplanterPoison(model, 4, epsilon=0.1, steps=2, rate=0.5)
    >>> train_ds = tf.data.Dataset.from_tensor_slices((x, y)).apply(attack)
    >>> pace = PacedPoisons(attack, x, y, num_classes=10, step=0.25)
    >>> history = model.fit(train_ds.batch(8), epochs=2, verbose=0, callbacks=[pace])
    >>> injection = attack.stream_injection
    >>> len(history.history["paced_released"]), injection.released <= len(injection.poisons)
    (2, True)
    """

    def __init__(
        self,
        attack,
        x,
        y,
        num_classes=None,
        max_accuracy_drop=0.2,
        max_share_increase=0.1,
        margin=0.5,
        step=0.1,
        prefix="paced_",
    ):
        super().__init__()
        if not hasattr(attack, "injection"):
            raise TypeError(
                "Expected `attack` to be a SupplanterPoison or VictimPoison. "
                f"Received: attack of type {type(attack).__name__}"
            )
        self.attack = attack
        self.margin = validate_number("margin", margin, low=0.0, high=1.0, low_open=True)
        self.step = validate_number("step", step, low=0.0, high=1.0, low_open=True)
        self.max_accuracy_drop = validate_number(
            "max_accuracy_drop", max_accuracy_drop, low=0.0, high=1.0, low_open=True
        )
        self.max_share_increase = validate_number(
            "max_share_increase", max_share_increase, low=0.0, high=1.0, low_open=True
        )
        self.prefix = str(prefix)
        self.shadow = PoisonMonitor(
            x,
            y,
            num_classes=num_classes,
            max_accuracy_drop=self.margin * self.max_accuracy_drop,
            max_share_increase=self.margin * self.max_share_increase,
            action="log",
            start_from_epoch=0,  # the fine-tuning threat model: watched from the start
        )
        self.history = []

    def set_model(self, model):
        super().set_model(model)
        self.shadow.set_model(model)

    def _step_count(self, injection):
        return max(1, int(round(self.step * len(injection.poisons))))

    def _injection(self):
        injection = getattr(self.attack, "stream_injection", None)
        if injection is None:
            if self.attack.injection is not None:
                raise ValueError(
                    "PacedPoisons paces a tf.data stream, and this attack was "
                    "applied only to arrays (`poison`), whose poisons are already "
                    "in them. Apply it to the training dataset, "
                    "`train_ds = dataset.apply(attack)`, and fit on that."
                )
            raise ValueError(
                "PacedPoisons needs an attack that was applied to the training "
                "data: call `dataset.apply(attack)` before `fit`."
            )
        return injection

    def on_train_begin(self, logs=None):
        injection = self._injection()
        self.history = []
        self.shadow.on_train_begin()
        injection.release(min(self._step_count(injection), len(injection.poisons)))
        self._passes = injection.passes

    def on_epoch_end(self, epoch, logs=None):
        injection = self._injection()
        self._passes = _check_one_pass(
            "PacedPoisons", epoch, injection, self._passes, "released"
        )
        alarms_before = len(self.shadow.alarms)
        self.shadow.on_epoch_end(epoch)
        alarmed = len(self.shadow.alarms) > alarms_before
        trained_on = injection.released
        step = self._step_count(injection)
        change = -step if alarmed else step
        injection.release(int(np.clip(trained_on + change, 0, len(injection.poisons))))
        self.history.append((epoch, trained_on, alarmed))
        if logs is not None:
            # What this epoch trained on, as a fraction of the poisons.
            logs[f"{self.prefix}released"] = trained_on / max(len(injection.poisons), 1)
