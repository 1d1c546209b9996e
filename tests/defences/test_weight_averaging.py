"""averaged_weights(): Keras' use_ema + SwapEMAWeights as one call."""

import keras
import numpy as np
import pytest

import keras_poison
from keras_poison import averaged_weights

X = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
Y = (X[:, 0] > 0).astype("int64")


def make_model(optimizer):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(
                2, activation="softmax", kernel_initializer=keras.initializers.GlorotUniform(0)
            ),
        ]
    )
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_returns_a_copy_of_the_optimizer_with_ema_and_the_swap_callback():
    base = keras.optimizers.SGD(learning_rate=0.05, momentum=0.5)
    averaged = averaged_weights(base, ema_momentum=0.9, ema_overwrite_frequency=3)
    assert isinstance(averaged, keras_poison.AveragedWeights)
    optimizer = averaged.optimizer
    assert type(optimizer) is keras.optimizers.SGD and optimizer is not base
    assert optimizer.use_ema and optimizer.ema_momentum == 0.9
    assert optimizer.ema_overwrite_frequency == 3
    assert optimizer.get_config()["momentum"] == 0.5
    assert float(optimizer.learning_rate) == pytest.approx(0.05)
    assert not base.use_ema  # the user's optimizer is left alone
    assert [type(c) for c in averaged.callbacks] == [keras.callbacks.SwapEMAWeights]


def test_optimizer_names_are_accepted():
    assert type(averaged_weights().optimizer) is keras.optimizers.SGD
    assert type(averaged_weights("adam").optimizer) is keras.optimizers.Adam


class KernelRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.kernels = []

    def on_train_batch_end(self, batch, logs=None):
        self.kernels.append(np.array(self.model.layers[0].kernel))


def test_fit_ends_with_the_moving_average_of_the_weights():
    # Keras' EMA: the average starts at the weights after the first step,
    # then average = m * average + (1 - m) * weights after every step.
    momentum = 0.9
    averaged = averaged_weights(keras.optimizers.SGD(0.5), ema_momentum=momentum)
    model = make_model(averaged.optimizer)
    recorder = KernelRecorder()
    model.fit(X, Y, epochs=3, batch_size=8, verbose=0,
              callbacks=[recorder, *averaged.callbacks])
    expected = recorder.kernels[0]
    for kernel in recorder.kernels[1:]:
        expected = momentum * expected + (1 - momentum) * kernel
    final = model.layers[0].kernel
    np.testing.assert_allclose(np.array(final), expected, rtol=1e-4, atol=1e-6)
    assert not np.allclose(np.array(final), recorder.kernels[-1])


def test_validation_during_fit_sees_the_averaged_weights():
    averaged = averaged_weights(keras.optimizers.SGD(0.5), ema_momentum=0.999)
    model = make_model(averaged.optimizer)
    history = model.fit(
        X, Y, validation_data=(X, Y), epochs=2, batch_size=8, verbose=0,
        callbacks=averaged.callbacks,
    )
    # After fit the model holds the averaged weights: evaluating them gives
    # the last validation loss, not the training weights' loss.
    assert model.evaluate(X, Y, verbose=0)[0] == pytest.approx(
        history.history["val_loss"][-1], rel=1e-4
    )


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"ema_momentum": 1.0}, ValueError, "ema_momentum"),
        ({"ema_momentum": -0.1}, ValueError, "ema_momentum"),
        ({"ema_momentum": "high"}, TypeError, "ema_momentum"),
        ({"ema_overwrite_frequency": 0}, ValueError, "ema_overwrite_frequency"),
        ({"swap_on_epoch": 1}, TypeError, "swap_on_epoch"),
        ({"optimizer": "no_such_optimizer"}, ValueError, "optimizer"),
        ({"optimizer": 3}, TypeError, "optimizer"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, text):
    with pytest.raises(error, match=text):
        averaged_weights(**kwargs)
