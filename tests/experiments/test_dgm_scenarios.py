"""The DGM baseline scenarios (`dgm_single`, `dgm_set`) of the class-oriented family.

Seed 003 compares its attacks with the direct gradient method (its
reference [45], Figs. 2-3). The harness crafts DGM poisons from the very
seeds its COEG attack and FL baseline use, labelled supplanter, so the three
differ only in the images.
"""

import keras
import numpy as np
import pytest

from keras_poison import DirectGradientPoison
from keras_poison import experiments
from keras_poison.experiments import scenarios

SEED = 3
K = 10


def tiny_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 1))
    h = keras.layers.Dense(8, activation="tanh")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(K, activation="softmax")(h))


@pytest.fixture()
def context(cached_base_context):
    return cached_base_context(tiny_model(), SEED, K)


DGM_SET = {**scenarios.DGM_SET_PARAMS, "set_size": 200, "normal_size": 20, "dgm_rounds": 2}
COEG = {**scenarios.COEG_SET_PARAMS, "set_size": 200, "steps": 1}


def test_dgm_set_crafts_from_exactly_the_seeds_of_coeg_set_and_its_flip(context):
    x, y = scenarios.finetuning_set(context, DGM_SET)
    x_d, y_d, mask_d, attack = scenarios.dgm_set_poisons(context, DGM_SET, 0.3)
    _, y_c, mask_c, _ = scenarios.coeg_set_poisons(context, COEG, 0.3)
    _, _, mask_f, _ = scenarios.label_flip_baseline(context, COEG, "fl", alpha=0.3)
    assert isinstance(attack, DirectGradientPoison)
    np.testing.assert_array_equal(mask_d, mask_c)
    np.testing.assert_array_equal(mask_d, mask_f)
    np.testing.assert_array_equal(y_d, y_c)  # labelled supplanter, like COEG
    assert mask_d.sum() == 60 and np.all(y[mask_d] != DGM_SET["supplanter"])
    np.testing.assert_array_equal(x_d[~mask_d], x[~mask_d])
    assert np.abs(x_d - x).max() <= 2 * DGM_SET["dgm_gamma"] + 1e-6
    assert not np.allclose(x_d[mask_d], x[mask_d])


def test_dgm_normal_set_is_stratified_from_the_training_split(context):
    normal_x, normal_y = scenarios.normal_set(context, DGM_SET)
    assert np.bincount(normal_y, minlength=K).tolist() == [2] * K
    attack = scenarios.dgm_set_poisons(context, DGM_SET, 0.1)[3]
    assert attack.normal_size == 20 and attack.get_config()["learning_rate"] == 0.05


def test_run_dgm_set_fine_tunes_on_the_dgm_poisons(context, monkeypatch):
    trained_on = []

    def fake_finetune(context, params, x, y, *args, **kwargs):
        trained_on.append((x, y))
        return {"ctt": 0.0, "test_error": 0.5, "accuracy": 0.5}

    monkeypatch.setattr(scenarios, "finetune", fake_finetune)
    record = scenarios.SCENARIOS["dgm_set"].function(context, {**DGM_SET, "alphas": (0.3,)})
    x_d, y_d, _, _ = scenarios.dgm_set_poisons(context, DGM_SET, 0.3)
    np.testing.assert_array_equal(trained_on[0][0], x_d)
    np.testing.assert_array_equal(trained_on[0][1], y_d)
    assert record["alphas"]["0.3"]["attack"] == "DirectGradientPoison"
    assert record["alphas"]["0.3"]["poisoned_count"] == 60


def test_dgm_scenarios_are_listed_with_their_parameters():
    names = [name for name, _ in experiments.list_scenarios()]
    assert {"dgm_single", "dgm_set"} <= set(names)
    for name in ("dgm_single", "dgm_set"):
        params = experiments.SCENARIOS[name].params
        assert {"dgm_lr": 0.05, "dgm_gamma": 0.2, "dgm_rounds": 5}.items() <= params.items()
        assert "craft_epsilon" not in params  # DGM has no ε


@pytest.mark.parametrize(
    "param,value", [("dgm_gamma", 0), ("dgm_lr", -1.0), ("dgm_rounds", 0), ("normal_size", 0)]
)
def test_bad_dgm_params_name_the_parameter(tmp_path, tiny_digits, param, value):
    with pytest.raises(experiments.ExperimentError, match=f"{param}"):
        experiments.run(["dgm_set"], data=tiny_digits, params={param: value}, out=str(tmp_path))


TINY = dict(dataset="digits", epochs=1, batch_size=128, verbose=0)


def test_dgm_single_and_set_run_on_tiny_real_digits(tiny_digits, tmp_path):
    params = {"finetune_epochs": 1, "dgm_rounds": 1, "normal_size": 20, "alphas": [0.5],
              "set_size": 100}
    results = experiments.run(
        ["coeg_single", "dgm_single", "dgm_set"], data=tiny_digits, out=str(tmp_path),
        params=params, log=lambda line: None, **TINY,
    )
    single = results["cells"]["dgm_single|0"]
    assert single["training_examples"] == 1 and single["poison_label"] == 4
    assert single["seed_index"] == results["cells"]["coeg_single|0"]["seed_index"]
    assert isinstance(single["ctt"], float) and single["steps_taken"] == 1
    assert 0 < single["max_abs_pixel_change"] <= 0.2 + 1e-6
    alpha = results["cells"]["dgm_set|0"]["alphas"]["0.5"]
    assert alpha["poisoned_count"] == 50 and alpha["attack"] == "DirectGradientPoison"
    table = (tmp_path / "table.md").read_text()
    assert "| dgm_set | α=0.5 |" in table and "| dgm_single |" in table
