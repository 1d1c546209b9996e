"""ClassOrientedMetrics and RecraftPoisons inside a real `model.fit`."""

import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_poison import ClassOrientedMetrics
from keras_poison import RandomFlip
from keras_poison import RecraftPoisons
from keras_poison import SupplanterPoison
from keras_poison import VictimPoison
from keras_poison import metrics

K = 4
SHAPE = (4, 4, 1)


def make_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(SHAPE)
    h = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(inputs))
    logits = keras.layers.Dense(K, name="logits")(h)
    model = keras.Model(inputs, keras.layers.Activation("softmax")(logits))
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    return model


def make_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % K
    x = rng.uniform(0, 0.3, size=(n,) + SHAPE).astype("float32")
    x[np.arange(n), y, 0, 0] += 0.7  # one bright pixel per class: learnable
    return x, y.astype("int64")


def test_metrics_are_logged_into_history_and_match_the_functions():
    model = make_model()
    x, y = make_data()
    before = model.predict(x, verbose=0).argmax(-1)
    callback = ClassOrientedMetrics(x, y, supplanter=2, class_names=list("abcd"))
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[callback])
    after = model.predict(x, verbose=0).argmax(-1)
    logged = history.history
    assert len(logged["holdout_ctt"]) == 3
    assert logged["holdout_accuracy"][-1] == pytest.approx(metrics.accuracy(y, after))
    expected_ctt = metrics.ctt_rate(y, before, after, 2, K).overall
    assert logged["holdout_ctt"][-1] == pytest.approx(expected_ctt)
    cft = metrics.cft_rate(y, before, after, K)
    for name, rate in zip("abcd", cft):
        assert logged[f"holdout_cft_{name}"][-1] == pytest.approx(rate)


def test_given_predictions_before_are_used_instead_of_a_fresh_prediction():
    model = make_model()
    x, y = make_data()
    before = np.full(len(y), 3)
    history = model.fit(
        x, y, epochs=1, verbose=0,
        callbacks=[ClassOrientedMetrics(x, y, supplanter=1, predictions_before=before)],
    )
    after = model.predict(x, verbose=0).argmax(-1)
    expected = metrics.ctt_rate(y, before, after, 1, K).overall
    assert history.history["holdout_ctt"][0] == pytest.approx(expected)


def test_csv_logger_after_the_callback_records_the_rates(tmp_path):
    model = make_model()
    x, y = make_data()
    path = tmp_path / "log.csv"
    model.fit(
        x, y, epochs=2, verbose=0,
        callbacks=[ClassOrientedMetrics(x, y, supplanter=0), keras.callbacks.CSVLogger(path)],
    )
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    assert {"holdout_ctt", "holdout_accuracy", "holdout_cft_3"} <= set(rows[0])


def test_metrics_callback_rejects_bad_arguments():
    x, y = make_data(8)
    with pytest.raises(ValueError, match=r"len\(x\)=8, len\(y\)=7"):
        ClassOrientedMetrics(x, y[:7])
    with pytest.raises(ValueError, match="`predictions_before` of shape"):
        ClassOrientedMetrics(x, y, predictions_before=np.zeros(3))
    model = make_model()
    with pytest.raises(ValueError, match=r"`supplanter` in \[0, 4\)"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[ClassOrientedMetrics(x, y, supplanter=9)])


def test_metrics_callback_rejects_a_supplanter_that_is_no_class_index_at_once():
    x, y = make_data(8)
    with pytest.raises(TypeError, match="`supplanter` to be an int class index"):
        ClassOrientedMetrics(x, y, supplanter=1.5)
    with pytest.raises(ValueError, match="`supplanter` >= 0. Received: supplanter=-1"):
        ClassOrientedMetrics(x, y, supplanter=-1)


def collect(dataset):
    images, labels = zip(*dataset.unbatch().as_numpy_iterator())
    return np.stack(images), np.array(labels)


@pytest.mark.parametrize("make_attack", [
    lambda model: SupplanterPoison(model, 1, epsilon=0.05, steps=3, rate=0.25),
    lambda model: VictimPoison(model, 2, 0, epsilon=0.05, steps=3, rate=0.5),
], ids=["coeg", "coes"])
def test_recraft_writes_new_poisons_into_the_same_pipeline(make_attack):
    model = make_model()
    x, y = make_data()
    model.fit(x, y, epochs=2, verbose=0)
    attack = make_attack(model)
    train = tf.data.Dataset.from_tensor_slices((x, y)).apply(attack).batch(16)
    first_images, first_labels = collect(train)
    initial = attack.poisons.images.copy()
    callback = RecraftPoisons(attack, every=2)
    model.fit(train, epochs=4, verbose=0, callbacks=[callback])
    assert callback.recrafted_epochs == [1, 3]
    # The model moved, so crafting against it gives other poisons ...
    assert not np.array_equal(attack.poisons.images, initial)
    # ... and the pipeline built before `fit` now yields them, same labels.
    images, labels = collect(train)
    rows = attack.poisons.source_indices
    np.testing.assert_array_equal(images[rows], attack.poisons.images)
    np.testing.assert_array_equal(labels, first_labels)
    untouched = np.setdiff1d(np.arange(len(x)), rows)
    np.testing.assert_array_equal(images[untouched], first_images[untouched])
    # A fresh crafting against the trained model gives the same poisons.
    fresh = make_attack(model).craft(x[rows], y[rows], indices=rows)
    np.testing.assert_allclose(fresh.images, attack.poisons.images, atol=1e-6)


def test_recraft_needs_an_applied_class_oriented_attack():
    with pytest.raises(TypeError, match="SupplanterPoison or VictimPoison"):
        RecraftPoisons(RandomFlip(0.2, K))
    model = make_model()
    x, y = make_data(8)
    callback = RecraftPoisons(SupplanterPoison(model, 1))
    with pytest.raises(ValueError, match="dataset.apply"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    with pytest.raises(ValueError, match="`every` >= 1"):
        RecraftPoisons(SupplanterPoison(model, 1), every=0)


# ------------------------------------------------------------ PacedPoisons


def test_released_poisons_are_the_first_ones_and_the_rest_pass_untouched():
    from keras_poison import InjectPoisons
    from keras_poison import PoisonSet

    x, y = make_data(20)
    poisons = PoisonSet(np.ones((4,) + SHAPE, "float32"), [3, 3, 3, 3], [2, 5, 11, 17])
    injection = InjectPoisons(poisons)
    stream = tf.data.Dataset.from_tensor_slices((x, y))
    poisoned = injection.transform(stream, with_mask=True).batch(7)
    injection.release(2)
    images, labels, mask = (np.concatenate(part) for part in zip(*poisoned.as_numpy_iterator()))
    assert np.flatnonzero(mask).tolist() == [2, 5]
    np.testing.assert_array_equal(images[[2, 5]], 1.0)
    untouched = np.setdiff1d(np.arange(20), [2, 5])
    np.testing.assert_array_equal(images[untouched], x[untouched])
    np.testing.assert_array_equal(labels[untouched], y[untouched])
    # The NumPy path reads the same count; releasing all restores the set.
    assert np.flatnonzero(injection.poison(x, y)[2]).tolist() == [2, 5]
    injection.release(4)
    assert injection.released == 4
    assert np.flatnonzero(injection.poison(x, y)[2]).tolist() == [2, 5, 11, 17]


def test_release_rejects_bad_counts_and_poison_only_streams():
    from keras_poison import InjectPoisons
    from keras_poison import PoisonSet

    poisons = PoisonSet(np.ones((2,) + SHAPE, "float32"), [3, 3], [0, 1])
    with pytest.raises(ValueError, match="number of poisons"):
        InjectPoisons(poisons).release(3)
    with pytest.raises(ValueError, match="count"):
        InjectPoisons(poisons).release(-1)
    with pytest.raises(ValueError, match="keep_clean=True"):
        InjectPoisons(poisons, keep_clean=False).release(1)


def script_shadow_alarms(pace, alarm_epochs):
    """Makes the pace's shadow monitor alarm at exactly `alarm_epochs`."""
    measure_and_check = pace.shadow.on_epoch_end

    def scripted(epoch, logs=None):
        measure_and_check(epoch, logs)
        pace.shadow.alarms = [a for a in pace.shadow.alarms if a["epoch"] != epoch]
        if epoch in alarm_epochs:
            pace.shadow.alarms.append({"epoch": epoch, "kind": "scripted"})

    pace.shadow.on_epoch_end = scripted


def test_the_pace_grows_a_step_per_quiet_epoch_and_backs_off_on_a_shadow_alarm():
    from keras_poison import PacedPoisons

    model = make_model()
    x, y = make_data()
    model.fit(x, y, epochs=2, verbose=0)
    attack = SupplanterPoison(model, 1, epsilon=0.05, steps=2, rate=0.5)
    train = tf.data.Dataset.from_tensor_slices((x, y)).apply(attack).batch(16)
    assert len(attack.poisons) == 32
    pace = PacedPoisons(attack, x, y, num_classes=K, step=0.25)
    script_shadow_alarms(pace, alarm_epochs={2})
    history = model.fit(train, epochs=5, verbose=0, callbacks=[pace])
    # 8 poisons at the start; +8 after quiet epochs 0 and 1, −8 after the
    # alarm at epoch 2, +8 after epoch 3.
    assert [count for _, count, _ in pace.history] == [8, 16, 24, 16, 24]
    assert [alarmed for _, _, alarmed in pace.history] == [False, False, True, False, False]
    assert history.history["paced_released"] == [0.25, 0.5, 0.75, 0.5, 0.75]
    assert attack.injection.released == 32
    # The stream injects exactly the released poisons.
    attack.injection.release(8)
    _, labels = collect(train)
    rows = attack.poisons.source_indices
    assert np.sum(labels[rows[:8]] == 1) == 8
    np.testing.assert_array_equal(labels[rows[8:]], y[rows[8:]])


def test_the_shadow_monitor_uses_margin_times_the_thresholds():
    from keras_poison import PacedPoisons

    model = make_model()
    x, y = make_data(16)
    pace = PacedPoisons(SupplanterPoison(model, 1), x, y, num_classes=K,
                        max_accuracy_drop=0.3, max_share_increase=0.2, margin=0.5)
    assert pace.shadow.max_accuracy_drop == pytest.approx(0.15)
    assert pace.shadow.max_share_increase == pytest.approx(0.1)


def test_paced_poisons_reject_bad_arguments():
    from keras_poison import PacedPoisons

    model = make_model()
    x, y = make_data(16)
    with pytest.raises(TypeError, match="SupplanterPoison or VictimPoison"):
        PacedPoisons(RandomFlip(0.2, K), x, y, num_classes=K)
    for name, value in (("margin", 0.0), ("step", 1.5), ("max_share_increase", 0.0)):
        with pytest.raises(ValueError, match=name):
            PacedPoisons(SupplanterPoison(model, 1), x, y, num_classes=K, **{name: value})
    callback = PacedPoisons(SupplanterPoison(model, 1), x, y, num_classes=K)
    with pytest.raises(ValueError, match="dataset.apply"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])


def test_paced_poisons_pace_the_stream_after_a_later_poison_on_arrays():
    # Reading the mask with `poison` after `ds.apply(attack)` must not
    # detach the pacing from the stream the model trains on.
    from keras_poison import PacedPoisons

    model = make_model()
    x, y = make_data()
    model.fit(x, y, epochs=1, verbose=0)
    attack = SupplanterPoison(model, 1, epsilon=0.05, steps=2, rate=0.5)
    base = tf.data.Dataset.from_tensor_slices((x, y))
    train = base.apply(lambda d: attack.transform(d, with_mask=True)).batch(16)
    _, _, truth = attack.poison(x, y)
    assert attack.stream_injection is not attack.injection
    fed = []
    pace = PacedPoisons(attack, x, y, num_classes=K, step=0.25)
    script_shadow_alarms(pace, alarm_epochs=set())
    stream = attack.stream_injection
    for epoch in range(3):
        if epoch == 0:
            pace.set_model(model)
            pace.on_train_begin()
        fed.append(int(sum(mask.numpy().sum() for _, _, mask in train)))
        pace.on_epoch_end(epoch, {})
    assert fed == [8, 16, 24]
    assert [count for _, count, _ in pace.history] == [8, 16, 24]
    assert stream.released == 32 and np.array_equal(np.sort(stream.poisons.source_indices),
                                                    np.flatnonzero(truth))


def test_paced_poisons_refuse_arrays_and_epochs_that_are_not_one_pass():
    from keras_poison import PacedPoisons

    model = make_model()
    x, y = make_data()
    model.fit(x, y, epochs=1, verbose=0)
    attack = SupplanterPoison(model, 1, epsilon=0.05, steps=2, rate=0.5)
    x_p, y_p, _ = attack.poison(x, y)
    with pytest.raises(ValueError, match="only to arrays"):
        model.fit(x_p, y_p, epochs=1, verbose=0,
                  callbacks=[PacedPoisons(attack, x, y, num_classes=K)])
    with pytest.raises(ValueError, match="only to arrays"):
        model.fit(x_p, y_p, epochs=1, verbose=0, callbacks=[RecraftPoisons(attack)])
    # A repeated stream: tf.data prepares the next pass with the old count. An
    # epoch of a pass and a half reads two passes whatever the prefetching did
    # (a whole pass per epoch raised only when prefetch ran ahead: flaky under load).
    train = tf.data.Dataset.from_tensor_slices((x, y)).apply(attack).repeat().batch(16)
    steps = len(x) // 16 + 2
    pace = PacedPoisons(attack, x, y, num_classes=K, step=0.25)
    with pytest.raises(RuntimeError, match="passes of the attack's poisons, not 1"):
        model.fit(train, epochs=4, steps_per_epoch=steps, verbose=0, callbacks=[pace])
    # Re-crafting through a repeated stream would reach the model an epoch late.
    with pytest.raises(RuntimeError, match="RecraftPoisons: epoch .* not 1, so what it trained on is not what was re-crafted"):
        model.fit(train, epochs=4, steps_per_epoch=steps, verbose=0,
                  callbacks=[RecraftPoisons(attack)])
    # Training on another stream than the attack's: no pass of its poisons.
    other = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    pace = PacedPoisons(attack, x, y, num_classes=K, step=0.25)
    with pytest.raises(RuntimeError, match="read 0 passes"):
        model.fit(other, epochs=1, verbose=0, callbacks=[pace])


def test_injection_counts_the_passes_that_reach_its_poisons():
    from keras_poison import InjectPoisons
    from keras_poison import PoisonSet

    x = np.zeros((12, 2, 2, 1), "float32")
    y = np.arange(12) % 3
    injection = InjectPoisons(PoisonSet(np.ones((2, 2, 2, 1), "float32"), [0, 0], [9, 4]))
    stream = tf.data.Dataset.from_tensor_slices((x, y)).apply(injection)
    for passes in (1, 2):
        list(stream.batch(5))
        assert injection.passes == passes
    list(tf.data.Dataset.from_tensor_slices((x, y)).batch(4).apply(injection))
    assert injection.passes == 3


def test_class_oriented_metrics_work_with_lazy_and_subclassed_models_and_refuse_one_output():
    x, y = make_data(30)
    lazy = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(K, activation="softmax")])

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.flatten = keras.layers.Flatten()
            self.dense = keras.layers.Dense(K, activation="softmax")

        def call(self, inputs):
            return self.dense(self.flatten(inputs))

    for model in (lazy, Net()):
        model.compile("adam", "sparse_categorical_crossentropy")
        history = model.fit(x, y, epochs=1, verbose=0, callbacks=[ClassOrientedMetrics(x, y)])
        assert f"holdout_cft_{K - 1}" in history.history
    binary = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Flatten(),
                               keras.layers.Dense(1, activation="sigmoid")])
    binary.compile("adam", "binary_crossentropy")
    with pytest.raises(ValueError, match="one score per class.*single sigmoid"):
        binary.fit(x, (y > 0).astype("float32"), epochs=1, verbose=0,
                   callbacks=[ClassOrientedMetrics(x, (y > 0).astype(int))])


def test_class_oriented_metrics_log_nan_for_a_diverged_model():
    x, y = make_data(30)
    model = make_model()
    callback = ClassOrientedMetrics(x, y, supplanter=1)
    callback.set_model(model)
    callback.on_train_begin()
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    logs = {}
    with pytest.warns(UserWarning, match="NaN or infinite scores"):
        callback.on_epoch_end(0, logs)
    assert np.isnan(logs["holdout_accuracy"]) and np.isnan(logs["holdout_ctt"])
