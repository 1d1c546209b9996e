"""PoisonMonitor: catches COES/COEG signatures, stays quiet on clean training."""

import csv
import os

import keras
import numpy as np
import pytest

from keras_poison import PoisonMonitor
from keras_poison import datasets

VICTIM, SUPPLANTER = 3, 5


def build_model():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Dense(64, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))


@pytest.fixture(scope="module")
def trusted():
    """A model trained on clean digits, the trusted held-out set, training data."""
    (x_train, y_train), (x_test, y_test) = datasets.load("digits")
    x_train = x_train.astype("float32") / 255.0
    x_test = x_test.astype("float32") / 255.0
    keras.utils.set_random_seed(0)
    model = build_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=30, batch_size=64, verbose=0)
    return model.get_weights(), x_train, y_train, x_test, y_test


def fine_tune(trusted, y_train, monitor, epochs=5, extra_callbacks=()):
    weights, x_train, _, _, _ = trusted
    keras.utils.set_random_seed(1)
    model = build_model()
    model.set_weights(weights)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0,
                        callbacks=[monitor, *extra_callbacks])
    return model, history


def test_quiet_while_fine_tuning_on_clean_data(trusted):
    _, _, y_train, x_test, y_test = trusted
    monitor = PoisonMonitor(x_test, y_test, num_classes=10, action="log")
    _, history = fine_tune(trusted, y_train, monitor)
    assert monitor.alarms == []
    assert history.history["monitor_alarm"] == [0.0] * 5


def test_victim_class_collapse_raises_an_accuracy_alarm(trusted):
    _, _, y_train, x_test, y_test = trusted
    poisoned = np.where(y_train == VICTIM, 8, y_train)  # COES-like: victim broken
    monitor = PoisonMonitor(x_test, y_test, num_classes=10, action="log")
    fine_tune(trusted, poisoned, monitor)
    collapses = [a for a in monitor.alarms if a["kind"] == "accuracy_collapse"]
    assert {a["class"] for a in collapses} == {VICTIM}
    assert collapses[0]["value"] < collapses[0]["reference"] - 0.2


def test_supplanter_surge_raises_a_share_alarm(trusted):
    _, _, y_train, x_test, y_test = trusted
    rng = np.random.default_rng(0)
    poisoned = np.where(rng.uniform(size=len(y_train)) < 0.5, SUPPLANTER, y_train)
    monitor = PoisonMonitor(x_test, y_test, num_classes=10, action="log")
    fine_tune(trusted, poisoned, monitor)
    surges = [a for a in monitor.alarms if a["kind"] == "share_surge"]
    assert surges and {a["class"] for a in surges} == {SUPPLANTER}


def test_stop_action_stops_and_restores_the_last_good_weights(trusted):
    weights, _, y_train, x_test, y_test = trusted
    poisoned = np.where(y_train == VICTIM, 8, y_train)
    monitor = PoisonMonitor(x_test, y_test, num_classes=10, action="stop")
    with pytest.warns(UserWarning, match="PoisonMonitor: possible poisoning"):
        model, history = fine_tune(trusted, poisoned, monitor, epochs=10)
    assert len(history.history["loss"]) == monitor.stopped_epoch + 1 < 10
    if monitor.reference_epoch == -1:  # alarm at the first epoch: the trusted model
        for restored, original in zip(model.get_weights(), weights):
            np.testing.assert_array_equal(restored, original)
    restored_accuracy = monitor.measure()["class_accuracy"][VICTIM]
    assert restored_accuracy == pytest.approx(monitor.reference["class_accuracy"][VICTIM])


def test_warn_action_warns_and_keeps_training(trusted):
    _, _, y_train, x_test, y_test = trusted
    poisoned = np.where(y_train == VICTIM, 8, y_train)
    monitor = PoisonMonitor(x_test, y_test, num_classes=10, action="warn")
    with pytest.warns(UserWarning, match=f"class {VICTIM} accuracy"):
        _, history = fine_tune(trusted, poisoned, monitor, epochs=3)
    assert len(history.history["loss"]) == 3


def test_logs_reach_history_and_csv_logger(trusted, tmp_path):
    _, _, y_train, x_test, y_test = trusted
    names = [f"digit{k}" for k in range(10)]
    monitor = PoisonMonitor(x_test, y_test, num_classes=10, class_names=names, action="log")
    path = os.path.join(tmp_path, "log.csv")
    _, history = fine_tune(trusted, y_train, monitor, epochs=2,
                           extra_callbacks=[keras.callbacks.CSVLogger(path)])
    for key in ("monitor_accuracy", "monitor_accuracy_digit3", "monitor_share_digit5", "monitor_alarm"):
        assert len(history.history[key]) == 2
    with open(path) as f:
        header = next(csv.reader(f))
    assert "monitor_share_digit9" in header
    shares = [history.history[f"monitor_share_digit{k}"][-1] for k in range(10)]
    assert sum(shares) == pytest.approx(1.0)


def test_one_hot_holdout_labels_need_no_num_classes(trusted):
    _, _, y_train, x_test, y_test = trusted
    monitor = PoisonMonitor(x_test, np.eye(10)[y_test], action="log")
    assert monitor.num_classes == 10


class _ScriptedModel:
    """Stands in for a model: predicts a scripted class per example and call."""

    def __init__(self, scripts):
        self.scripts = list(scripts)
        self.calls = 0
        self.stop_training = False
        self.weights = [np.zeros(1)]

    def predict(self, x, batch_size=None, verbose=0):
        predicted = self.scripts[min(self.calls, len(self.scripts) - 1)]
        self.calls += 1
        return np.eye(2)[predicted]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [w.copy() for w in weights]


def _drive(monitor, model, epochs, initial_epoch=0):
    monitor.set_model(model)
    monitor.on_train_begin()
    for epoch in range(initial_epoch, initial_epoch + epochs):
        model.weights = [np.full(1, epoch + 1.0)]
        monitor.on_epoch_end(epoch, {})


def _class0_accuracy(correct):
    """Scripted predictions: the first `correct` of ten class-0 examples right."""
    predicted = np.array([0] * 10 + [1] * 10)
    predicted[correct:10] = 1
    return predicted


Y2 = np.array([0] * 10 + [1] * 10)


def test_thresholds_are_strict_and_stop_restores_the_last_good_weights():
    # Class 0 accuracy: 1.0 before training, 0.8 (drop 0.2: not > 0.2), then 0.5.
    monitor = PoisonMonitor(np.zeros((20, 1)), Y2, num_classes=2, max_accuracy_drop=0.2,
                            max_share_increase=0.5, action="stop")
    model = _ScriptedModel([_class0_accuracy(10), _class0_accuracy(8), _class0_accuracy(5)])
    with pytest.warns(UserWarning):
        _drive(monitor, model, epochs=2)
    assert [(a["epoch"], a["kind"], a["class"]) for a in monitor.alarms] == [
        (1, "accuracy_collapse", 0)
    ]
    assert model.stop_training and model.weights[0][0] == 1.0  # epoch-0 weights back


def test_slow_drift_is_caught_against_the_starting_point():
    # Class 0 loses 0.15 per epoch: never 0.2 since the last good epoch,
    # but 0.3 below the trusted model by the second epoch.
    monitor = PoisonMonitor(np.zeros((20, 1)), Y2, num_classes=2, action="log")
    scripts = [_class0_accuracy(10), _class0_accuracy(9), _class0_accuracy(7), _class0_accuracy(6)]
    _drive(monitor, _ScriptedModel(scripts), epochs=3)
    collapses = [(a["epoch"], a["reference"]) for a in monitor.alarms
                 if a["kind"] == "accuracy_collapse"]
    assert collapses[0] == (1, 1.0)


def test_sudden_fall_is_caught_against_the_last_good_epoch():
    # From scratch: class 0 climbs from 0.1 to 0.9 after the warm-up, then falls to 0.6.
    monitor = PoisonMonitor(np.zeros((20, 1)), Y2, num_classes=2, action="log",
                            start_from_epoch=1, max_share_increase=0.5)
    scripts = [_class0_accuracy(1), _class0_accuracy(1), _class0_accuracy(9), _class0_accuracy(6)]
    _drive(monitor, _ScriptedModel(scripts), epochs=3)
    assert [(a["epoch"], a["reference"]) for a in monitor.alarms] == [(2, pytest.approx(0.9))]


def test_start_from_epoch_only_updates_the_reference():
    # An untrained model predicts class 0 for everything, then class 1 for
    # everything, then learns: class 0's accuracy falls 1.0 -> 0.0 at epoch 0.
    y = np.array([0] * 10 + [1] * 10)
    scripts = [np.zeros(20, int), np.ones(20, int), y, y]
    eager = PoisonMonitor(np.zeros((20, 1)), y, num_classes=2, action="log", start_from_epoch=0)
    _drive(eager, _ScriptedModel(scripts), epochs=3)
    assert ("accuracy_collapse", 0) in [(a["kind"], a["class"]) for a in eager.alarms]
    assert {a["epoch"] for a in eager.alarms} == {0}
    patient = PoisonMonitor(np.zeros((20, 1)), y, num_classes=2, action="log", start_from_epoch=1)
    _drive(patient, _ScriptedModel(scripts), epochs=3)
    assert patient.alarms == [] and patient.reference_epoch == 2 and patient.armed_epoch == 0


def test_a_drop_equal_to_the_limit_never_alarms_whatever_the_float_rounding():
    # 1.0 -> 0.8 and 0.9 -> 0.7 are both drops of 0.2 (the latter 0.20000000000000007).
    for before, after in ((10, 8), (9, 7)):
        monitor = PoisonMonitor(np.zeros((20, 1)), Y2, num_classes=2, max_accuracy_drop=0.2,
                                max_share_increase=0.9, action="log", start_from_epoch=0)
        _drive(monitor, _ScriptedModel([_class0_accuracy(before), _class0_accuracy(after)]), 1)
        assert monitor.alarms == [], (before, after)


def test_warm_up_counts_the_epochs_of_this_fit_when_it_resumes():
    # A fit resumed at epoch 5 with two warm-up epochs: class 0 falls in the
    # second (epoch 6), which is still warm-up; counting from epoch 0 armed at 5.
    scripts = [Y2, Y2, _class0_accuracy(2), _class0_accuracy(2)]
    patient = PoisonMonitor(np.zeros((20, 1)), Y2, num_classes=2, action="log", start_from_epoch=2)
    _drive(patient, _ScriptedModel(scripts), epochs=3, initial_epoch=5)
    assert patient.alarms == [] and patient.armed_epoch == 6


def test_regression_a_class_reaching_its_own_share_is_no_surge():
    # From scratch the model first predicts only class 0; class 1's share then
    # rises 0 -> 0.5, its share of the labels. That raised a false alarm.
    y = np.array([0] * 10 + [1] * 10)
    monitor = PoisonMonitor(np.zeros((20, 1)), y, num_classes=2, action="log", start_from_epoch=0)
    _drive(monitor, _ScriptedModel([np.zeros(20, int), y, y]), epochs=2)
    assert monitor.alarms == []
    # Above its share it is one: class 1 predicted for 16 of 20 (0.8 > 0.5 + 0.1).
    surge = np.array([0] * 4 + [1] * 16)
    monitor = PoisonMonitor(np.zeros((20, 1)), y, num_classes=2, action="log", start_from_epoch=0,
                            max_accuracy_drop=1.0)
    _drive(monitor, _ScriptedModel([y, surge]), epochs=1)
    assert [(a["kind"], a["class"]) for a in monitor.alarms] == [("share_surge", 1)]


def test_auto_watches_a_trained_model_at_once_and_a_model_from_scratch_once_settled():
    y = np.array([0] * 10 + [1] * 10)
    trained = PoisonMonitor(np.zeros((20, 1)), y, num_classes=2, action="log")
    _drive(trained, _ScriptedModel([y, _class0_accuracy(5)]), epochs=1)
    assert trained.armed_epoch == -1 and trained.alarms  # fine-tuning: from epoch 1
    # From scratch (chance accuracy at the start): accuracy climbs 0.5, 0.7,
    # 0.9, 0.95, 0.95, 0.95, then class 0 collapses. Only the collapse alarms.
    climbing = [_class0_accuracy(c) for c in (0, 4, 8, 9, 9, 9, 9, 2)]
    scratch = PoisonMonitor(np.zeros((20, 1)), y, num_classes=2, action="log")
    _drive(scratch, _ScriptedModel(climbing), epochs=7)
    assert scratch.armed_epoch is not None and scratch.armed_epoch >= 3
    assert {a["epoch"] for a in scratch.alarms} == {6}


def test_a_run_from_scratch_that_never_settles_says_it_was_not_watched():
    y = np.array([0] * 10 + [1] * 10)
    swinging = [_class0_accuracy(c) for c in (0, 9, 4, 9, 4, 9, 4)]
    monitor = PoisonMonitor(np.zeros((20, 1)), y, num_classes=2, action="log")
    model = _ScriptedModel(swinging)
    _drive(monitor, model, epochs=6)
    assert monitor.alarms == [] and monitor.armed_epoch is None
    with pytest.warns(UserWarning, match="never watched this run: the model started untrained"):
        monitor.on_train_end()
    late = PoisonMonitor(np.zeros((20, 1)), y, num_classes=2, action="log", start_from_epoch=5)
    _drive(late, _ScriptedModel(swinging), epochs=3)
    with pytest.warns(UserWarning, match="start_from_epoch=5 is not less than the 3 epochs"):
        late.on_train_end()


def test_config_rebuilds_an_equal_monitor(trusted):
    _, _, _, x_test, y_test = trusted
    monitor = PoisonMonitor(x_test, y_test, num_classes=10, max_accuracy_drop=0.3,
                            action="stop", start_from_epoch=2)
    config = keras.saving.serialize_keras_object(monitor)
    assert config["registered_name"] == "keras_poison>PoisonMonitor"
    clone = PoisonMonitor.from_config(monitor.get_config(), x_test, y_test)
    assert clone.get_config() == monitor.get_config()
    with pytest.raises(ValueError, match="held-out data"):
        PoisonMonitor.from_config(monitor.get_config())


# ------------------------------------------------------------------ bad input

Y = np.arange(20) % 4
X = np.zeros((20, 2, 2, 1), "float32")


def test_holdout_missing_a_class_is_rejected():
    with pytest.raises(ValueError, match=r"no examples of class\(es\) \[3\]"):
        PoisonMonitor(X, Y % 3, num_classes=4)


def test_holdout_labels_outside_range_are_rejected():
    with pytest.raises(ValueError, match=r"labels in \[0, 4\). Received: y contains 7"):
        PoisonMonitor(X, np.where(Y == 0, 7, Y), num_classes=4)


def test_negative_holdout_labels_are_rejected():
    with pytest.raises(ValueError, match=">= 0"):
        PoisonMonitor(X, Y - 1, num_classes=4)


@pytest.mark.parametrize("name,value", [
    ("max_accuracy_drop", 0.0), ("max_accuracy_drop", 1.5),
    ("max_share_increase", -0.1), ("max_share_increase", 2.0),
])
def test_thresholds_outside_their_range_are_rejected(name, value):
    with pytest.raises(ValueError, match=rf"`{name}` in \(0, 1\]. Received: {name}="):
        PoisonMonitor(X, Y, num_classes=4, **{name: value})


def test_unknown_action_is_rejected():
    with pytest.raises(ValueError, match="action"):
        PoisonMonitor(X, Y, num_classes=4, action="panic")


def test_sparse_labels_without_num_classes_are_rejected():
    with pytest.raises(ValueError, match="num_classes"):
        PoisonMonitor(X, Y)


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="len\\(x\\)=19"):
        PoisonMonitor(X[:19], Y, num_classes=4)


def test_wrong_number_of_class_names_is_rejected():
    with pytest.raises(ValueError, match="class_names"):
        PoisonMonitor(X, Y, num_classes=4, class_names=["a", "b"])


def test_model_with_another_number_of_classes_is_rejected_at_train_begin():
    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    monitor = PoisonMonitor(X, Y, num_classes=4)
    with pytest.raises(ValueError, match="4 outputs"):
        model.fit(X, Y % 3, epochs=1, verbose=0, callbacks=[monitor])


def test_alarms_are_readable_before_training():
    monitor = PoisonMonitor(np.zeros((4, 2)), np.array([0, 1, 0, 1]), num_classes=2)
    assert monitor.alarms == [] and monitor.history == []
