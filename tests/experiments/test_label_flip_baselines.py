"""The harness' label-flip baselines relabel exactly the crafted attacks' seeds.

Seed 003 (§5) compares COEG with FL and COES with FL-1 / FL-2 on the same
seeds: the crafted attack's seed images, unmodified, relabelled. These tests
need no training: the base model is an untrained tiny classifier put in the
run's cache, and the fine-tuning step is replaced by a stub.
"""

import keras
import numpy as np
import pytest

from keras_poison import SupplanterPoison
from keras_poison import VictimPoison
from keras_poison.experiments import scenarios

SEED = 3
K = 10


def tiny_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 1))
    logits = keras.layers.Dense(K)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Softmax()(logits))


@pytest.fixture()
def context(cached_base_context):
    return cached_base_context(tiny_model(), SEED, K)


COES = {**scenarios.COES_PARAMS, "set_size": 200, "steps": 1}
COEG = {**scenarios.COEG_SET_PARAMS, "set_size": 200, "steps": 1}


def crafted_coes_seeds(context):
    x, y = scenarios.finetuning_set(context, COES)
    attack = VictimPoison(
        context.shared[("base", SEED)][0], victim=COES["victim"],
        poison_label=COES["poison_label"], rate=COES["coes_rate"], epsilon=COES["craft_epsilon"],
        steps=COES["steps"], lam=COES["lam"], value_range=(0.0, 1.0), seed=SEED,
    )
    attack.poison(x, y)
    return x, y, attack.poisons.source_indices


def test_fl1_relabels_every_seed_of_the_crafted_coes_attack(context):
    x, y, seeds = crafted_coes_seeds(context)
    x_p, y_p, mask, summary = scenarios.label_flip_baseline(context, COES, "fl1")
    label = COES["poison_label"]
    np.testing.assert_array_equal(y_p[seeds], np.full(len(seeds), label))
    not_seeds = np.setdiff1d(np.arange(len(y)), seeds)
    np.testing.assert_array_equal(y_p[not_seeds], y[not_seeds])
    np.testing.assert_array_equal(x_p, x)  # the images are untouched
    # The mask marks what changed: every seed but the poison label's own.
    np.testing.assert_array_equal(np.flatnonzero(mask), np.sort(seeds[y[seeds] != label]))
    assert summary["attack_config"]["seed_count"] == len(seeds) == 100
    assert summary["poisoned_count"] == 90  # 10 seeds per class, class 0 unchanged


def test_fl2_relabels_only_the_crafted_coes_attacks_victim_seeds(context):
    x, y, seeds = crafted_coes_seeds(context)
    victim_seeds = np.sort(seeds[y[seeds] == COES["victim"]])
    x_p, y_p, mask, summary = scenarios.label_flip_baseline(context, COES, "fl2")
    np.testing.assert_array_equal(np.flatnonzero(mask), victim_seeds)
    assert np.all(y_p[mask] == COES["poison_label"])
    np.testing.assert_array_equal(y_p[~mask], y[~mask])
    np.testing.assert_array_equal(x_p, x)
    assert summary["labels_changed"] == len(victim_seeds) == 10


def test_coeg_fl_relabels_exactly_the_seeds_coeg_set_crafts_from(context):
    x, y = scenarios.finetuning_set(context, COEG)
    _, _, crafted_mask, attack = scenarios.coeg_set_poisons(context, COEG, 0.3)
    assert isinstance(attack, SupplanterPoison)
    x_p, y_p, mask, summary = scenarios.label_flip_baseline(context, COEG, "fl", alpha=0.3)
    np.testing.assert_array_equal(np.flatnonzero(mask), np.sort(attack.poisons.source_indices))
    np.testing.assert_array_equal(mask, crafted_mask)
    assert np.all(y_p[mask] == COEG["supplanter"]) and np.all(y[mask] != COEG["supplanter"])
    np.testing.assert_array_equal(x_p, x)
    assert summary["attack_config"]["relabelled_to"] == COEG["supplanter"]


@pytest.mark.parametrize("variant", ["fl1", "fl2"])
def test_run_coes_fine_tunes_on_the_baseline_of_the_same_seeds(context, monkeypatch, variant):
    trained_on = {}

    def fake_finetune(context, params, x, y, *args, **kwargs):
        trained_on["y"] = y
        return {"cft_per_class": [0.0] * K}

    monkeypatch.setattr(scenarios, "finetune", fake_finetune)
    record = scenarios.run_coes(context, COES, variant=variant)
    _, y, seeds = crafted_coes_seeds(context)
    changed = np.flatnonzero(trained_on["y"] != y)
    relabelled = seeds if variant == "fl1" else seeds[y[seeds] == COES["victim"]]
    relabelled = relabelled[y[relabelled] != COES["poison_label"]]
    np.testing.assert_array_equal(changed, np.sort(relabelled))
    assert record["attack_config"]["seeds_of"] == "VictimPoison"


def test_unknown_baseline_variant_is_rejected(context):
    with pytest.raises(ValueError, match="`variant`"):
        scenarios.label_flip_baseline(context, COES, "fl3")
