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
