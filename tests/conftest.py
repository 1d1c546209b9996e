"""Test-wide set-up: two logical CPU devices, configured before TF starts.

`tf.distribute.MirroredStrategy` needs two devices to show that poisoning is
independent of how a batch is split across replicas; logical devices can only
be configured before TensorFlow initializes its runtime, so it happens here.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def two_cpu_strategy():
    """One `MirroredStrategy` over the two logical CPUs, shared by every test.

    Two strategies in one process number their collective ops alike, so a
    crafting run under a second strategy can meet the first one's collective
    instances ("Shape mismatch in the collective instance"); one instance for
    the whole session avoids that.
    """
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest configures two logical CPUs"
    return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
