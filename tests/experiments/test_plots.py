"""The harness' plots: what the paper's Fig. 5 heat map shows is what the cells hold."""

import numpy as np

from keras_poison.experiments import plots


def _cell(scenario, seed, lr, per_alpha):
    return {
        "scenario": scenario,
        "seed": seed,
        "alphas": {
            str(alpha): {"ctt_per_class": values, "finetune_learning_rate": lr}
            for alpha, values in per_alpha.items()
        },
    }


RESULTS = {
    "data": {"class_names": ["a", "b", "c"]},
    "cells": {
        "coeg_set|0": _cell("coeg_set", 0, 1e-4, {0.1: [0.0, 0.2, 0.4], 0.5: [0.0, 0.6, None]}),
        "coeg_set|1": _cell("coeg_set", 1, 1e-4, {0.1: [0.0, 0.4, 0.2], 0.5: [0.0, 0.8, 1.0]}),
        "coeg_set_fl|0": _cell("coeg_set_fl", 0, 1e-4, {0.5: [0.0, 0.1, 0.3]}),
        "baseline|0": {"scenario": "baseline", "seed": 0},
    },
}


def test_per_class_ctt_grid_is_the_mean_over_seeds_in_points():
    grids = plots.ctt_per_class_grids(RESULTS)
    assert list(grids) == [("coeg_set", 1e-4), ("coeg_set_fl", 1e-4)]
    alphas, grid = grids[("coeg_set", 1e-4)]
    assert alphas == [0.1, 0.5]
    # A class missing from one seed (None) is averaged over the others.
    np.testing.assert_allclose(grid, [[0, 0], [30, 70], [30, 100]])
    assert grids[("coeg_set_fl", 1e-4)][0] == [0.5]


def test_runs_at_two_learning_rates_get_a_panel_each_for_fig_6():
    slow = _cell("coeg_set", 0, 1e-5, {0.5: [0.0, 0.0, 0.1]})
    results = {**RESULTS, "cells": {**RESULTS["cells"], "slow|0": slow}}
    assert ("coeg_set", 1e-5) in plots.ctt_per_class_grids(results)
    figure = plots.ctt_per_class_vs_alpha(results)
    assert len(figure.axes) == 3 + 1  # three heat maps and the colour bar


def test_no_set_attack_draws_nothing():
    assert plots.ctt_per_class_vs_alpha({"data": RESULTS["data"], "cells": {}}) is None
