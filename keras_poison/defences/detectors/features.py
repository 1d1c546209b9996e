"""Reading a Keras model's penultimate features, for the feature-space detectors.

Spectral signatures, activation clustering and deep k-NN all look at the
representation the model feeds its last layer. `feature_extractor` finds it in
any functional or Sequential model (ART's detectors accept Sequential models
only): by default the input of the last layer that has weights (for the
library's models, the input of the `"logits"` Dense layer), or any layer the
user names.
"""

import keras
import numpy as np


def feature_extractor(model, layer=None):
    """A model that maps inputs to the features a detector reads.

    Args:
        model: a built functional or Sequential `keras.Model`.
        layer: `None`, a layer name, an int index into `model.layers`, or a
            `keras.layers.Layer` of `model`; its output is read. `None` reads
            the input of the last layer with weights (the penultimate
            representation). Defaults to `None`.

    Returns:
        A `keras.Model` from `model.inputs` to the features.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected `model` to be a keras.Model. Received: model of type {type(model).__name__}"
        )
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(
            "Expected `model` to be a built functional or Sequential model with symbolic "
            f"inputs, so its layers' outputs can be read. Received: {type(model).__name__} "
            "without `inputs` (a subclassed or unbuilt model). Build it, or compute the "
            "features yourself and pass `features=` to `detect`."
        )
    if layer is None:
        nested = _nested_last_model(model)
        if nested is not None:
            # The model wraps another (e.g. defence layers in front of a base
            # model): read the inner model's penultimate features, fed from
            # the outer graph so the front layers still run.
            inner = feature_extractor(nested)
            outer_input = nested._inbound_nodes[-1].input_tensors[0]
            return keras.Model(inputs, inner(outer_input), name=f"{model.name}_features")
        features = _penultimate_output(model)
    else:
        features = _resolve_layer(model, layer).output
    return keras.Model(inputs, features, name=f"{model.name}_features")


def extract_features(model, x, layer=None, batch_size=256):
    """Penultimate (or `layer`) features of `x`, flattened to `(n, d)` float32."""
    extractor = feature_extractor(model, layer)
    features = extractor.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(features, np.float32).reshape(len(features), -1)


def _last_weighted_layer(model):
    """The model's last layer with weights, or `None`."""
    weighted = [layer for layer in model.layers if layer.weights]
    return weighted[-1] if weighted else None


def _nested_last_model(model):
    """The last weighted layer when it is itself a model called once on one input."""
    last = _last_weighted_layer(model)
    if not isinstance(last, keras.Model) or len(last._inbound_nodes) != 1:
        return None
    if len(last._inbound_nodes[-1].input_tensors) != 1:
        return None
    return last


def _penultimate_output(model):
    last = _last_weighted_layer(model)
    if last is None:
        raise ValueError(
            f"Expected `model` to have a layer with weights whose input is the "
            f"penultimate representation. Received: model {model.name!r} without weights"
        )
    features = last.input
    if isinstance(features, (list, tuple)):
        raise ValueError(
            f"Expected the last weighted layer {last.name!r} to take one input. "
            f"Received: {len(features)} inputs; pass `layer=` to choose the features"
        )
    if any(features is tensor for tensor in model.inputs):
        raise ValueError(
            f"Expected `model` to have a hidden layer before its last weighted layer "
            f"{last.name!r}. Received: a model whose last weighted layer reads the "
            "model's input directly, so there is no penultimate layer to read"
        )
    return features


def _resolve_layer(model, layer):
    if isinstance(layer, keras.layers.Layer):
        if not any(layer is own for own in model.layers):
            raise ValueError(
                f"Expected `layer` to be one of the model's layers. Received: {layer.name!r}"
            )
        return layer
    if isinstance(layer, str):
        names = [own.name for own in model.layers]
        if layer not in names:
            raise ValueError(f"Expected `layer` to be one of {names}. Received: layer={layer!r}")
        return model.get_layer(layer)
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if not -len(model.layers) <= layer < len(model.layers):
            raise ValueError(
                f"Expected `layer` in [-{len(model.layers)}, {len(model.layers)}). "
                f"Received: layer={layer}"
            )
        return model.layers[layer]
    raise TypeError(
        f"Expected `layer` to be None, a layer name, an index or a layer. Received: {layer!r}"
    )
