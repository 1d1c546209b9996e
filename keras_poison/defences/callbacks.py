"""Defence callbacks: watch a trusted held-out set while training.

* `PoisonMonitor` is the class-oriented paper's countermeasure (§6,
  "periodically checking the accuracy" of the model) made concrete: per-class
  accuracy and each class's share of predictions on a trusted held-out set,
  every epoch, with an alarm for the signatures of COES (one class's accuracy
  collapses) and COEG (one class's share of predictions surges).
* `RestoredWeightsCheck` warns when `EarlyStopping(restore_best_weights=True)`
  restored weights that are no better than chance — the trap the seed
  report's recipe falls into on batch-norm models (see `docs/benchmarks.md`).
"""

import warnings

import keras
import numpy as np

from keras_poison._validation import to_class_indices
from keras_poison._validation import validate_int
from keras_poison._validation import validate_number

_ACTIONS = ("log", "warn", "stop")
AUTO = "auto"
# `start_from_epoch="auto"`: a model counts as trained when its trusted
# accuracy is this share of the way from chance to perfect ...
_TRAINED_SHARE = 0.25
# ... and a model trained from scratch has settled once its trusted accuracy
# rose by less than _SETTLED_GAIN over the last _SETTLED_EPOCHS epochs
# (chosen on clean runs from scratch: benchmarks/monitor_from_scratch.py).
_SETTLED_EPOCHS = 3
_SETTLED_GAIN = 0.06
# Float slack when comparing a change of rates with its limit.
_TOLERANCE = 1e-9


@keras.saving.register_keras_serializable(package="keras_poison")
class PoisonMonitor(keras.callbacks.Callback):
    """Raises an alarm when one class collapses or one class takes over.

    At the start of training and after every epoch the model predicts a
    trusted held-out set; for every class `k` the monitor computes its
    accuracy (the share of class-`k` examples predicted as `k`) and its
    share of all predictions. It compares them with two references, the last
    *good* epoch (the last one without an alarm) and the starting point (the
    model before training, or the state at `start_from_epoch`), taking for
    each class the better of the two, so that both a sudden fall and a slow
    drift show. It raises an alarm when

    * a class's accuracy fell by more than `max_accuracy_drop` (the COES
      signature: a victim class breaks while the others are spared), or
    * a class's share of predictions rose by more than `max_share_increase`
      (the COEG signature: a supplanter class attracts predictions).

    Keys written to `logs` (put this callback before `CSVLogger` or
    `TensorBoard`): `<prefix>accuracy`, `<prefix>accuracy_<class>`,
    `<prefix>share_<class>` and `<prefix>alarm` (1.0 on an alarm epoch).
    Every alarm is also kept in `alarms`, a list of dicts; `armed_epoch` is
    the epoch after which alarms could fire (`-1`: from the first epoch,
    `None`: never armed).

    When alarms can start is set by `start_from_epoch`. Fine-tuning a
    trusted model (the class-oriented threat model) watches from the first
    epoch, against the model before training. Training from scratch moves
    per-class accuracy a lot while the model learns, so those epochs only
    set the reference. The default, `"auto"`, tells the two apart: a model
    whose trusted accuracy at the start is at least a quarter of the way
    from chance to perfect is fine-tuned (alarms from the first epoch);
    otherwise alarms wait until the model has settled: over the last 3
    epochs its trusted accuracy rose by less than 6 points (and is that
    quarter of the way above chance), and no class's accuracy or share of
    predictions moved by more than half its alarm threshold. A model that
    never settles is never watched (`armed_epoch` stays `None`): its own
    epoch-to-epoch swings would be taken for poisoning; pass an int to
    watch it anyway. Poisoning present from the first epoch of a run from
    scratch is then part of the reference: the monitor is for changes. On clean runs from scratch
    this raised no false alarm where `start_from_epoch=0` raised dozens
    (docs/benchmarks.md, "PoisonMonitor on runs from scratch"). A share of
    predictions is a surge only above the class's own share of the trusted
    labels: an untrained model that never predicts a class is no reference.

    Against an attacker who knows the thresholds and paces its poisons
    under them (`PacedPoisons`, with a shadow monitor on its own data), it
    held on MNIST 5k fine-tuning: every paced COEG and COES run was caught,
    the first alarm coming at epochs 5–13 instead of 3, after at most 9
    points of CTT (docs/benchmarks.md §17). What an attacker can take
    below the thresholds stays possible by construction.

    Args:
        x: trusted held-out images.
        y: their labels, sparse or one-hot; every class must be present.
        num_classes: int >= 2, or `None` to read it from one-hot `y`.
            Defaults to `None`.
        max_accuracy_drop: float in (0, 1], the largest fall of one class's
            accuracy tolerated. Defaults to `0.2`.
        max_share_increase: float in (0, 1], the largest rise of one class's
            share of predictions tolerated. Defaults to `0.1`.
        action: `"log"` (only log), `"warn"` (also `warnings.warn`) or
            `"stop"` (also stop training). Defaults to `"warn"`.
        restore_last_good_weights: bool; with `action="stop"`, put back the
            weights of the last good epoch when stopping. Defaults to `True`.
        start_from_epoch: `"auto"` or an int >= 0, the number of epochs
            of each `fit` that only update the reference before alarms can
            fire (`0`: from the first epoch; counted from `initial_epoch`
            when a fit resumes). Defaults to `"auto"` (see above).
        class_names: list of str or `None`, used in the log keys and
            messages instead of class indices. Defaults to `None`.
        prefix: str put before every key. Defaults to `"monitor_"`.
        batch_size: int, prediction batch size. Defaults to `256`.

    Example:

    >>> model = keras_poison.models.lenet5(input_shape=(12, 12, 1), seed=0)
    >>> x = np.random.default_rng(0).uniform(size=(40, 12, 12, 1)).astype("float32")
    >>> y = np.arange(40) % 10
    >>> monitor = PoisonMonitor(x, y, num_classes=10, action="log")
    >>> history = model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor])
    >>> "monitor_alarm" in history.history, len(monitor.history)
    (True, 2)
    """

    def __init__(
        self,
        x,
        y,
        num_classes=None,
        max_accuracy_drop=0.2,
        max_share_increase=0.1,
        action="warn",
        restore_last_good_weights=True,
        start_from_epoch=AUTO,
        class_names=None,
        prefix="monitor_",
        batch_size=256,
    ):
        super().__init__()
        labels, width = to_class_indices(y, "y")
        if num_classes is None:
            if width is None:
                raise ValueError(
                    "Expected `num_classes` when `y` holds sparse labels (a "
                    "class absent from `y` could not be noticed otherwise). "
                    "Received: num_classes=None"
                )
            num_classes = width
        self.num_classes = validate_int("num_classes", num_classes, 2)
        if width is not None and width != self.num_classes:
            raise ValueError(
                f"Expected one-hot `y` of width num_classes={self.num_classes}. "
                f"Received: width {width}"
            )
        if labels.size and labels.max() >= self.num_classes:
            raise ValueError(
                f"Expected labels in [0, {self.num_classes}). Received: y "
                f"contains {int(labels.max())}"
            )
        counts = np.bincount(labels, minlength=self.num_classes)
        missing = np.flatnonzero(counts == 0)
        if missing.size:
            raise ValueError(
                "Expected every class in the held-out set so its accuracy can "
                f"be watched. Received: no examples of class(es) {missing.tolist()} "
                f"in `y` (num_classes={self.num_classes})"
            )
        x = np.asarray(x)
        if len(x) != len(labels):
            raise ValueError(
                "Expected as many held-out images as labels. Received: "
                f"len(x)={len(x)}, len(y)={len(labels)}"
            )
        self.x = x
        self.labels = labels
        self.max_accuracy_drop = validate_number(
            "max_accuracy_drop", max_accuracy_drop, low=0.0, high=1.0, low_open=True
        )
        self.max_share_increase = validate_number(
            "max_share_increase", max_share_increase, low=0.0, high=1.0, low_open=True
        )
        if action not in _ACTIONS:
            raise ValueError(
                f"Expected `action` in {_ACTIONS}. Received: action={action!r}"
            )
        self.action = action
        self.restore_last_good_weights = bool(restore_last_good_weights)
        if start_from_epoch != AUTO:
            start_from_epoch = validate_int("start_from_epoch", start_from_epoch, 0)
        self.start_from_epoch = start_from_epoch
        if class_names is not None:
            class_names = [str(name) for name in class_names]
            if len(class_names) != self.num_classes:
                raise ValueError(
                    f"Expected {self.num_classes} `class_names`. "
                    f"Received: {len(class_names)}"
                )
        self.class_names = class_names
        self.prefix = str(prefix)
        self.batch_size = validate_int("batch_size", batch_size, 1)
        self._counts = counts
        self._label_share = counts / counts.sum()
        # Readable before `fit` too; reset when training begins.
        self.alarms = []
        self.history = []
        self.stopped_epoch = None

    def _name(self, k):
        return self.class_names[k] if self.class_names else str(k)

    def measure(self):
        """Per-class accuracy and prediction share of the model now.

        Returns:
            A dict with `accuracy` (overall), `class_accuracy` and
            `prediction_share` (arrays of length `num_classes`).
        """
        probabilities = self.model.predict(self.x, batch_size=self.batch_size, verbose=0)
        if probabilities.shape[-1] != self.num_classes:
            raise ValueError(
                f"Expected a model with {self.num_classes} outputs "
                f"(num_classes={self.num_classes}). Received: output width "
                f"{probabilities.shape[-1]}"
            )
        predicted = np.argmax(probabilities, axis=-1)
        correct = predicted == self.labels
        hits = np.bincount(self.labels[correct], minlength=self.num_classes)
        shares = np.bincount(predicted, minlength=self.num_classes) / len(predicted)
        return {
            "accuracy": float(correct.mean()),
            "class_accuracy": hits / self._counts,
            "prediction_share": shares,
        }

    def on_train_begin(self, logs=None):
        self.alarms = []
        self.history = []
        self.stopped_epoch = None
        self.reference = self.measure()
        self.reference_epoch = -1  # the model before training
        self.start = self.reference
        self.history.append(self.reference)
        self._good_weights = None
        self._keep_good_weights()
        if self.start_from_epoch == AUTO:
            self.armed = self._trained(self.reference)
        else:
            self.armed = self.start_from_epoch == 0
        self.armed_epoch = -1 if self.armed else None

    def _trained(self, state):
        chance = 1.0 / self.num_classes
        return state["accuracy"] >= chance + _TRAINED_SHARE * (1.0 - chance)

    def _settled(self):
        # History holds the state before training, then one entry per epoch.
        if len(self.history) <= _SETTLED_EPOCHS or not self._trained(self.history[-1]):
            return False
        window = self.history[-1 - _SETTLED_EPOCHS :]
        gain = window[-1]["accuracy"] - window[0]["accuracy"]
        # Per class too: a model whose classes still swing by half a threshold
        # from epoch to epoch would alarm on its own noise.
        accuracy = np.array([state["class_accuracy"] for state in window])
        share = np.array([state["prediction_share"] for state in window])
        steady = (
            np.ptp(accuracy, axis=0).max() <= self.max_accuracy_drop / 2
            and np.ptp(share, axis=0).max() <= self.max_share_increase / 2
        )
        return gain < _SETTLED_GAIN and steady

    def _keep_good_weights(self):
        # Copying every weight each epoch only pays when they may be restored.
        if self.action == "stop" and self.restore_last_good_weights:
            self._good_weights = self.model.get_weights()

    def _find_alarms(self, epoch, now):
        # Compare with the better of the last good epoch and the starting
        # point: a sudden fall shows against the first, a slow drift against
        # the second.
        best_accuracy = np.maximum(
            self.reference["class_accuracy"], self.start["class_accuracy"]
        )
        lowest_share = np.maximum(
            np.minimum(self.reference["prediction_share"], self.start["prediction_share"]),
            self._label_share,
        )
        checks = (
            ("accuracy_collapse", best_accuracy - now["class_accuracy"],
             self.max_accuracy_drop, now["class_accuracy"], best_accuracy),
            ("share_surge", now["prediction_share"] - lowest_share,
             self.max_share_increase, now["prediction_share"], lowest_share),
        )
        return [
            {
                "epoch": epoch,
                "kind": kind,
                "class": int(k),
                "value": float(value[k]),
                "reference": float(reference[k]),
            }
            for kind, change, limit, value, reference in checks
            # "More than" the limit, as documented: a change equal to it
            # (0.9 - 0.7 is 0.20000000000000007 in floats) does not alarm.
            for k in np.flatnonzero(change > limit + _TOLERANCE)
        ]

    def on_epoch_end(self, epoch, logs=None):
        now = self.measure()
        self.history.append(now)
        found = self._find_alarms(epoch, now) if self.armed else []
        if logs is not None:
            logs[f"{self.prefix}accuracy"] = now["accuracy"]
            for k in range(self.num_classes):
                name = self._name(k)
                logs[f"{self.prefix}accuracy_{name}"] = float(now["class_accuracy"][k])
                logs[f"{self.prefix}share_{name}"] = float(now["prediction_share"][k])
            logs[f"{self.prefix}alarm"] = float(bool(found))
        if not self.armed:
            # Warming up: this epoch is the new starting point.
            self.start = now
            if self.start_from_epoch == AUTO:
                self.armed = self._settled()
            else:
                # Epochs of this fit (the history starts with the model before
                # it), so `fit(initial_epoch=...)` warms up as long as any fit.
                self.armed = len(self.history) - 1 >= self.start_from_epoch
            if self.armed:
                self.armed_epoch = epoch
        if not found:
            self.reference = now
            self.reference_epoch = epoch
            self._keep_good_weights()
            return

        self.alarms.extend(found)
        if self.action == "log":
            return
        warnings.warn(self._describe(epoch, found), stacklevel=2)
        if self.action == "stop":
            self.model.stop_training = True
            self.stopped_epoch = epoch
            if self.restore_last_good_weights:
                self.model.set_weights(self._good_weights)

    def on_train_end(self, logs=None):
        if not self.armed:
            # Not silent: a user may take a quiet monitor for a clean run.
            if self.start_from_epoch == AUTO:
                why = (
                    "the model started untrained and its per-class accuracy never "
                    "settled (start_from_epoch='auto')"
                )
            else:
                why = (
                    f"start_from_epoch={self.start_from_epoch} is not less than the "
                    f"{len(self.history) - 1} epochs trained"
                )
            warnings.warn(
                f"PoisonMonitor never watched this run: {why}, so no alarm could "
                "fire. Pass a smaller start_from_epoch to watch it from then on.",
                stacklevel=2,
            )

    def _describe(self, epoch, found):
        parts = []
        for alarm in found:
            what = "accuracy" if alarm["kind"] == "accuracy_collapse" else "share of predictions"
            parts.append(
                f"class {self._name(alarm['class'])} {what} "
                f"{alarm['reference']:.3f} -> {alarm['value']:.3f}"
            )
        last_good = (
            "before training"
            if self.reference_epoch < 0
            else f"epoch {self.reference_epoch + 1}"
        )
        message = (
            f"PoisonMonitor: possible poisoning at epoch {epoch + 1} (against "
            f"the last good state, {last_good}, or the start): "
            + "; ".join(parts)
            + "."
        )
        if self.action == "stop":
            message += " Training stopped"
            if self.restore_last_good_weights:
                message += f"; weights restored to {last_good}"
            message += "."
        return message

    def get_config(self):
        # The held-out data is not configuration: `from_config` takes it again.
        return {
            "num_classes": self.num_classes,
            "max_accuracy_drop": self.max_accuracy_drop,
            "max_share_increase": self.max_share_increase,
            "action": self.action,
            "restore_last_good_weights": self.restore_last_good_weights,
            "start_from_epoch": self.start_from_epoch,
            "class_names": self.class_names,
            "prefix": self.prefix,
            "batch_size": self.batch_size,
        }

    @classmethod
    def from_config(cls, config, x=None, y=None):
        """Rebuilds the monitor from `get_config()` and its held-out data."""
        if x is None or y is None:
            raise ValueError(
                "PoisonMonitor.from_config needs the trusted held-out data: "
                "`PoisonMonitor.from_config(config, x, y)`. Received: "
                f"x={'None' if x is None else 'array'}, y={'None' if y is None else 'array'}"
            )
        return cls(x, y, **config)


@keras.saving.register_keras_serializable(package="keras_poison")
class RestoredWeightsCheck(keras.callbacks.Callback):
    """Warns when `EarlyStopping` restored weights near chance accuracy.

    `EarlyStopping(monitor="val_loss", restore_best_weights=True)` restores
    the epoch with the lowest validation loss. The validation loss of a
    batch-norm model can rise for its first epochs while its accuracy
    climbs, so the "best" epoch may be the first, at chance level (this is
    what the seed report's recipe did on the CIFAR subset; see
    `docs/benchmarks.md`). This callback records `accuracy_key` every epoch
    and, at the end of training, warns if the restored epoch's value is
    within `margin` of chance (`1 / num_classes`). Put it after the
    `EarlyStopping` it checks.

    Args:
        early_stopping: the `keras.callbacks.EarlyStopping` to check.
        accuracy_key: str, the logged accuracy to read. Defaults to
            `"val_accuracy"`.
        margin: float in [0, 1], how far above chance counts as learning.
            Defaults to `0.05`.

    Example:

    >>> stop = keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True)
    >>> check = RestoredWeightsCheck(stop)
    >>> check.margin
    0.05
    """

    def __init__(self, early_stopping, accuracy_key="val_accuracy", margin=0.05):
        super().__init__()
        if not isinstance(early_stopping, keras.callbacks.EarlyStopping):
            raise TypeError(
                "Expected `early_stopping` to be a keras.callbacks.EarlyStopping. "
                f"Received: {type(early_stopping).__name__}"
            )
        self.early_stopping = early_stopping
        self.accuracy_key = str(accuracy_key)
        self.margin = validate_number("margin", margin, low=0.0, high=1.0)

    def on_train_begin(self, logs=None):
        # By epoch index as Keras counts it (from `initial_epoch`), as
        # `EarlyStopping.best_epoch` does.
        self.values = {}
        self.restored_epoch = None
        self.near_chance = False

    def on_epoch_end(self, epoch, logs=None):
        self.values[epoch] = (logs or {}).get(self.accuracy_key)

    def on_train_end(self, logs=None):
        stopper = self.early_stopping
        if not stopper.restore_best_weights or stopper.best_weights is None:
            return
        self.restored_epoch = stopper.best_epoch
        value = self.values.get(self.restored_epoch)
        if value is None:
            return
        num_classes = _output_width(self.model)
        if not num_classes:
            return
        chance = 1.0 / num_classes
        if value <= chance + self.margin:
            self.near_chance = True
            warnings.warn(
                f"EarlyStopping restored the weights of epoch "
                f"{self.restored_epoch + 1}, whose {self.accuracy_key} "
                f"{value:.3f} is near chance ({chance:.3f}). Its monitored "
                f"'{stopper.monitor}' was best there, but the model had not "
                "learned yet; pass `start_from_epoch` to EarlyStopping"
                + ("" if "acc" in stopper.monitor else " or monitor an accuracy instead")
                + ".",
                stacklevel=2,
            )

    def get_config(self):
        # Keras callbacks have no get_config; keep what rebuilds the stopper.
        stopper = self.early_stopping
        return {
            "early_stopping": {
                key: getattr(stopper, key)
                for key in _EARLY_STOPPING_ARGS
                if hasattr(stopper, key)
            },
            "accuracy_key": self.accuracy_key,
            "margin": self.margin,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["early_stopping"] = keras.callbacks.EarlyStopping(
            **config["early_stopping"]
        )
        return cls(**config)


_EARLY_STOPPING_ARGS = (
    "monitor",
    "min_delta",
    "patience",
    "verbose",
    "mode",
    "baseline",
    "restore_best_weights",
    "start_from_epoch",
)


def _output_width(model):
    """The number of classes a built model predicts, or None if unknown."""
    try:
        return int(model.outputs[0].shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
