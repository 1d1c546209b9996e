"""Noise-robust losses: formulas, label formats, serialization, bad input."""

import os

import keras
import numpy as np
import pytest

import keras_poison
from keras_poison import BootstrappingCrossentropy
from keras_poison import GeneralizedCrossentropy
from keras_poison import LabelSmoothingCrossentropy
from keras_poison import SymmetricCrossentropy

RNG = np.random.default_rng(0)
PROBS = RNG.dirichlet(np.ones(4), size=8).astype("float32")
LABELS = np.array([0, 1, 2, 3, 0, 1, 2, 3])
ONE_HOT = np.eye(4, dtype="float32")[LABELS]

ALL_LOSSES = [
    LabelSmoothingCrossentropy(0.1),
    GeneralizedCrossentropy(q=0.7),
    SymmetricCrossentropy(alpha=0.1, beta=1.0),
    BootstrappingCrossentropy(beta=0.95),
    BootstrappingCrossentropy(beta=0.8, mode="hard"),
]
IDS = ["smoothing", "gce", "sce", "bootstrap_soft", "bootstrap_hard"]


def value(loss, y_true, y_pred):
    return float(keras.ops.convert_to_numpy(loss(y_true, y_pred)))


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=IDS)
def test_sparse_column_and_one_hot_labels_give_the_same_loss(loss):
    sparse = value(loss, LABELS, PROBS)
    assert value(loss, LABELS[:, None], PROBS) == pytest.approx(sparse, rel=1e-6)
    assert value(loss, ONE_HOT, PROBS) == pytest.approx(sparse, rel=1e-6)


@pytest.mark.parametrize("loss_class", [
    LabelSmoothingCrossentropy, GeneralizedCrossentropy, SymmetricCrossentropy,
    BootstrappingCrossentropy,
])
def test_logits_give_the_same_loss_as_their_softmax(loss_class):
    logits = RNG.normal(size=(8, 4)).astype("float32")
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    with_logits = value(loss_class(from_logits=True), LABELS, logits)
    assert with_logits == pytest.approx(value(loss_class(), LABELS, probs), rel=1e-5)


def test_smoothing_on_one_hot_matches_keras_categorical_crossentropy():
    keras_loss = keras.losses.CategoricalCrossentropy(label_smoothing=0.2)
    ours = LabelSmoothingCrossentropy(label_smoothing=0.2)
    assert value(ours, LABELS, PROBS) == pytest.approx(
        value(keras_loss, ONE_HOT, PROBS), rel=1e-6
    )


def test_zero_smoothing_on_sparse_matches_keras_sparse_crossentropy():
    keras_loss = keras.losses.SparseCategoricalCrossentropy()
    ours = LabelSmoothingCrossentropy(label_smoothing=0.0)
    assert value(ours, LABELS, PROBS) == pytest.approx(
        value(keras_loss, LABELS, PROBS), rel=1e-6
    )


def test_gce_is_one_minus_p_true_to_the_q_over_q():
    p_true = PROBS[np.arange(8), LABELS]
    expected = np.mean((1 - p_true**0.5) / 0.5)
    assert value(GeneralizedCrossentropy(q=0.5), LABELS, PROBS) == pytest.approx(
        expected, rel=1e-5
    )


def test_gce_with_q_one_is_mean_absolute_error_of_p_true():
    p_true = PROBS[np.arange(8), LABELS]
    assert value(GeneralizedCrossentropy(q=1.0), LABELS, PROBS) == pytest.approx(
        np.mean(1 - p_true), rel=1e-5
    )


def test_gce_approaches_crossentropy_as_q_goes_to_zero():
    ce = value(keras.losses.SparseCategoricalCrossentropy(), LABELS, PROBS)
    assert value(GeneralizedCrossentropy(q=1e-4), LABELS, PROBS) == pytest.approx(
        ce, rel=1e-3
    )


def test_sce_is_weighted_crossentropy_plus_scaled_mae():
    p_true = PROBS[np.arange(8), LABELS]
    ce = np.mean(-np.log(p_true))
    rce = np.mean(4.0 * (1 - p_true))  # -A (1 - p_y) with A = -4
    loss = SymmetricCrossentropy(alpha=0.3, beta=2.0, log_zero=-4.0)
    assert value(loss, LABELS, PROBS) == pytest.approx(0.3 * ce + 2.0 * rce, rel=1e-5)


def test_bootstrap_with_beta_one_is_crossentropy():
    ce = value(keras.losses.SparseCategoricalCrossentropy(), LABELS, PROBS)
    for mode in ("soft", "hard"):
        loss = BootstrappingCrossentropy(beta=1.0, mode=mode)
        assert value(loss, LABELS, PROBS) == pytest.approx(ce, rel=1e-6)


def test_hard_bootstrap_mixes_label_with_predicted_class():
    log_p = np.log(PROBS)
    predicted = PROBS.argmax(-1)
    expected = np.mean(
        -(0.8 * log_p[np.arange(8), LABELS] + 0.2 * log_p[np.arange(8), predicted])
    )
    loss = BootstrappingCrossentropy(beta=0.8, mode="hard")
    assert value(loss, LABELS, PROBS) == pytest.approx(expected, rel=1e-5)


def _gradient_norm(loss, label, logits):
    import tensorflow as tf

    logits = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        out = loss(np.array([label]), logits)
    return float(tf.norm(tape.gradient(out, logits)))


@pytest.mark.parametrize("loss,share", [
    (GeneralizedCrossentropy(q=0.7, from_logits=True), 0.01),
    # SCE keeps alpha = 0.1 of cross-entropy; its reverse term adds almost nothing.
    (SymmetricCrossentropy(alpha=0.1, beta=1.0, from_logits=True), 0.11),
], ids=["gce", "sce"])
def test_robust_losses_pull_less_on_a_confidently_contradicted_label(loss, share):
    # The model is sure of class 0; the (flipped) label says 3.
    logits = np.array([[8.0, 0.0, 0.0, 0.0]], "float32")
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert _gradient_norm(loss, 3, logits) < share * _gradient_norm(ce, 3, logits)


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=IDS)
def test_config_round_trip_gives_an_equal_loss(loss):
    config = keras.losses.serialize(loss)
    restored = keras.losses.deserialize(config)
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    assert value(restored, LABELS, PROBS) == pytest.approx(value(loss, LABELS, PROBS))


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=IDS)
def test_model_compiled_with_loss_saves_and_loads_without_custom_objects(loss, tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="softmax")])
    model.compile("adam", loss=loss)
    model.fit(RNG.normal(size=(16, 3)), LABELS.repeat(2), epochs=1, verbose=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.loss) is type(loss)
    assert loaded.loss.get_config() == loss.get_config()


def test_losses_are_exported_at_the_top_level():
    for name in ("LabelSmoothingCrossentropy", "GeneralizedCrossentropy",
                 "SymmetricCrossentropy", "BootstrappingCrossentropy"):
        assert hasattr(keras_poison, name)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, 1.5, float("nan")])
def test_smoothing_outside_zero_one_is_rejected(smoothing):
    with pytest.raises(ValueError, match=r"label_smoothing.*\[0, 1\)"):
        LabelSmoothingCrossentropy(label_smoothing=smoothing)


@pytest.mark.parametrize("q", [0.0, -0.5, 1.01])
def test_gce_q_outside_zero_one_is_rejected(q):
    with pytest.raises(ValueError, match=r"`q` in \(0, 1\]. Received: q="):
        GeneralizedCrossentropy(q=q)


@pytest.mark.parametrize("kwargs,name", [
    ({"alpha": -0.1}, "alpha"),
    ({"beta": -1.0}, "beta"),
])
def test_negative_sce_weights_are_rejected(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        SymmetricCrossentropy(**kwargs)


def test_sce_with_both_weights_zero_is_rejected():
    with pytest.raises(ValueError, match="alpha.*beta"):
        SymmetricCrossentropy(alpha=0.0, beta=0.0)


def test_sce_log_zero_must_be_negative():
    with pytest.raises(ValueError, match="log_zero"):
        SymmetricCrossentropy(log_zero=0.0)


@pytest.mark.parametrize("beta", [-0.1, 1.1])
def test_bootstrap_beta_outside_zero_one_is_rejected(beta):
    with pytest.raises(ValueError, match="beta"):
        BootstrappingCrossentropy(beta=beta)


def test_bootstrap_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode.*'soft' or 'hard'"):
        BootstrappingCrossentropy(mode="medium")


@pytest.mark.parametrize("bad", ["0.1", True, None])
def test_non_numeric_arguments_are_type_errors(bad):
    with pytest.raises(TypeError, match="label_smoothing"):
        LabelSmoothingCrossentropy(label_smoothing=bad)


def test_labels_of_the_wrong_width_are_rejected():
    with pytest.raises(ValueError, match="y_true"):
        GeneralizedCrossentropy()(np.eye(3, dtype="float32"), PROBS[:3])


# ------------------------------------------------- Keras' spelling, old names


@pytest.mark.parametrize("old,new,kwargs", [
    ("GeneralizedCrossEntropy", GeneralizedCrossentropy, {"q": 0.5}),
    ("SymmetricCrossEntropy", SymmetricCrossentropy, {"alpha": 0.3, "beta": 2.0}),
])
def test_old_loss_name_warns_and_still_computes_the_same_loss(old, new, kwargs):
    with pytest.warns(DeprecationWarning, match=f"`{old}` is deprecated.*`{new.__name__}`"):
        loss = getattr(keras_poison, old)(**kwargs)
    assert isinstance(loss, new)
    assert value(loss, LABELS, PROBS) == pytest.approx(value(new(**kwargs), LABELS, PROBS))


@pytest.mark.parametrize("old,new", [
    ("generalized_cross_entropy", "generalized_crossentropy"),
    ("symmetric_cross_entropy", "symmetric_crossentropy"),
])
def test_old_function_name_warns_and_still_computes_the_same_values(old, new):
    from keras_poison import defences

    with pytest.warns(DeprecationWarning, match=f"`{old}` is deprecated"):
        got = keras.ops.convert_to_numpy(getattr(defences, old)(LABELS, PROBS))
    expected = keras.ops.convert_to_numpy(getattr(defences, new)(LABELS, PROBS))
    np.testing.assert_allclose(got, expected)


def test_new_names_do_not_warn():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        GeneralizedCrossentropy()
        SymmetricCrossentropy()


@pytest.mark.parametrize("old,new", [
    ("GeneralizedCrossEntropy", GeneralizedCrossentropy),
    ("SymmetricCrossEntropy", SymmetricCrossentropy),
])
def test_model_saved_with_the_old_loss_class_name_still_loads(old, new, tmp_path):
    import json
    import zipfile

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="softmax")])
    model.compile("adam", loss=new())
    model.fit(RNG.normal(size=(16, 3)), LABELS.repeat(2), epochs=1, verbose=0)
    path = os.path.join(tmp_path, "new.keras")
    model.save(path)
    # Rewrite the saved config as the library wrote it before the rename.
    old_path = os.path.join(tmp_path, "old.keras")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old_path, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                text = data.decode().replace(new.__name__, old)
                assert f"keras_poison>{old}" in text
                json.loads(text)
                data = text.encode()
            target.writestr(item, data)
    with pytest.warns(DeprecationWarning, match=old):
        loaded = keras.saving.load_model(old_path)
    assert isinstance(loaded.loss, new)
    assert loaded.loss.get_config() == model.loss.get_config()


# ------------------------------------------------------------------ repr


def test_loss_repr_shows_its_configuration():
    assert repr(GeneralizedCrossentropy(q=0.5, from_logits=True)) == (
        "GeneralizedCrossentropy(q=0.5, from_logits=True, "
        "reduction='sum_over_batch_size', name='generalized_crossentropy')"
    )
    text = repr(SymmetricCrossentropy(alpha=0.2, beta=1.5, reduction="sum", name="sce"))
    assert text == (
        "SymmetricCrossentropy(alpha=0.2, beta=1.5, log_zero=-4.0, from_logits=False, "
        "reduction='sum', name='sce')"
    )
    assert repr(BootstrappingCrossentropy(beta=0.8, mode="hard")).startswith(
        "BootstrappingCrossentropy(beta=0.8, mode='hard', from_logits=False"
    )
    assert "object at 0x" not in repr(LabelSmoothingCrossentropy(0.2))
    assert "label_smoothing=0.2" in repr(LabelSmoothingCrossentropy(0.2))


def test_loss_repr_names_a_non_default_dtype():
    assert "dtype='float16'" in repr(GeneralizedCrossentropy(dtype="float16"))
    assert "dtype" not in repr(GeneralizedCrossentropy())


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=IDS)
@pytest.mark.parametrize("bad", [4, -1])
def test_sparse_labels_outside_the_classes_are_rejected(loss, bad):
    # one_hot made them rows of zeros: a finite, constant loss that trained on nothing.
    labels = LABELS.copy()
    labels[3] = bad
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match=r"sparse labels in \[0, 4\)"):
        value(loss, labels, PROBS)


def test_fit_with_off_by_one_labels_raises_instead_of_training_on_nothing():
    import tensorflow as tf

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="softmax")])
    model.compile("sgd", GeneralizedCrossentropy())
    x = RNG.normal(size=(8, 3)).astype("float32")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"sparse labels in \[0, 4\)"):
        model.fit(x, LABELS + 1, epochs=1, verbose=0)
