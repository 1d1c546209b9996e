"""The experiment runner: outputs, mean ± std over seeds, resume, class-oriented cells."""

import json
import os

import pytest

from keras_poison import experiments
from keras_poison.experiments import scenarios

TINY = dict(dataset="digits", epochs=1, batch_size=128, verbose=0)


@pytest.fixture(scope="module")
def two_seed_run(tiny_digits, tmp_path_factory):
    """random_flip with seeds 0 and 1: two cells, run once for the module."""
    out = str(tmp_path_factory.mktemp("two_seeds"))
    lines = []
    results = experiments.run(
        ["random_flip"], data=tiny_digits, seeds=2, out=out, log=lines.append, **TINY
    )
    return out, results, lines


def test_run_writes_results_table_and_plots(two_seed_run):
    out, results, _ = two_seed_run
    assert sorted(os.listdir(out)) >= ["plots", "results.json", "table.md"]
    plots = os.listdir(os.path.join(out, "plots"))
    assert "training_curves.png" in plots
    assert "confusion_random_flip_seed1.png" in plots
    with open(os.path.join(out, "results.json")) as f:
        saved = json.load(f)
    assert sorted(saved["cells"]) == ["random_flip|0", "random_flip|1"]
    cell = saved["cells"]["random_flip|1"]
    for key in ("accuracy", "macro_f1", "confusion_matrix", "history", "config", "versions", "seconds"):
        assert key in cell, key
    assert cell["seed"] == 1 and cell["config"]["params"] == {"rate": 0.2}
    assert cell["poisoned_fraction"] == pytest.approx(0.2, abs=0.01)
    assert set(cell["versions"]) >= {"keras_poison", "tensorflow", "keras"}
    assert len(cell["history"]["val_accuracy"]) == 1
    assert saved["summary"] == results["summary"]


def test_table_has_mean_and_std_over_two_seeds(two_seed_run):
    out, results, _ = two_seed_run
    with open(os.path.join(out, "table.md")) as f:
        table = f.read()
    rows = [line for line in table.splitlines() if line.startswith("| random_flip |")]
    assert len(rows) == 1 and rows[0].count("±") >= 3
    last5 = [cell["accuracy_last5"] for cell in results["cells"].values()]
    # One epoch was run, so the last-epochs mean is the final reading itself.
    assert last5 == [cell["history"]["val_accuracy"][-1] for cell in results["cells"].values()]
    assert results["summary"]["random_flip"]["accuracy_last5"]["n"] == 2
    summary = results["summary"]["random_flip"]["accuracy"]
    assert summary["n"] == 2 and summary["std"] >= 0


def test_progress_lines_name_every_cell(two_seed_run):
    _, _, lines = two_seed_run
    assert any(line.startswith("[2/2] random_flip (seed 1): accuracy") for line in lines)


def test_rerun_skips_every_finished_cell(two_seed_run, tiny_digits, monkeypatch):
    out, first, _ = two_seed_run

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(scenarios, "train_and_score", no_training)
    lines = []
    again = experiments.run(
        ["random_flip"], data=tiny_digits, seeds=2, out=out, log=lines.append, **TINY
    )
    assert sum("finished earlier, skipped" in line for line in lines) == 2
    for key, cell in first["cells"].items():
        assert again["cells"][key]["started_utc"] == cell["started_utc"]
        assert again["cells"][key]["seconds"] == cell["seconds"]


def test_interrupted_run_loses_no_finished_cell(tiny_digits, tmp_path, monkeypatch):
    def interrupted(context, params):
        raise KeyboardInterrupt

    monkeypatch.setitem(scenarios._ATTACKS, "random_flip", interrupted)
    with pytest.raises(KeyboardInterrupt):
        experiments.run(["baseline", "random_flip"], data=tiny_digits, out=str(tmp_path), **TINY)
    with open(tmp_path / "results.json") as f:
        assert list(json.load(f)["cells"]) == ["baseline|0"]
    assert not [name for name in os.listdir(tmp_path) if ".tmp" in name]

    monkeypatch.undo()
    lines = []
    results = experiments.run(
        ["baseline", "random_flip"], data=tiny_digits, out=str(tmp_path), log=lines.append, **TINY
    )
    assert any(line.startswith("[1/2] baseline (seed 0): finished earlier") for line in lines)
    assert sorted(results["cells"]) == ["baseline|0", "random_flip|0"]


def test_targeted_flip_runs_the_baseline_it_needs_first(tiny_digits, tmp_path):
    results = experiments.run(["targeted_flip"], data=tiny_digits, out=None, plots=False, log=lambda line: None, **TINY)
    assert list(results["cells"]) == ["baseline|0", "targeted_flip|0"]
    assert results["cells"]["targeted_flip|0"]["pairs"]


# The class-oriented tests share one output folder, so the clean base model
# is trained once (by whichever runs first) and loaded from its cache after.
SMALL = {"steps": 1, "finetune_epochs": 1}


@pytest.fixture(scope="module")
def oriented_out(tmp_path_factory):
    return str(tmp_path_factory.mktemp("class_oriented"))


def run_oriented(names, tiny_digits, out, **params):
    return experiments.run(
        names, data=tiny_digits, out=out, params={**SMALL, **params},
        log=lambda line: None, **TINY,
    )


def test_coeg_set_reports_ctt_per_alpha(tiny_digits, oriented_out):
    results = run_oriented(["coeg_set"], tiny_digits, oriented_out, alphas=[0.5], set_size=100)
    alpha = results["cells"]["coeg_set|0"]["alphas"]["0.5"]
    assert alpha["poisoned_count"] == 50 and isinstance(alpha["ctt"], float)
    assert "holdout_ctt" in alpha["history"]
    table = open(os.path.join(oriented_out, "table.md")).read()
    assert "| coeg_set | α=0.5 |" in table
    plots = os.listdir(os.path.join(oriented_out, "plots"))
    assert "ctt_over_epochs.png" in plots and "ctt_vs_alpha.png" in plots
    assert "ctt_per_class_vs_alpha.png" in plots  # paper Fig. 5


def test_coeg_single_fine_tunes_on_one_point(tiny_digits, oriented_out):
    cell = run_oriented(["coeg_single"], tiny_digits, oriented_out)["cells"]["coeg_single|0"]
    assert cell["training_examples"] == 1 and cell["poison_label"] == 4
    assert isinstance(cell["ctt"], float) and cell["seed_class"] == 6


def test_coes_reports_cft_per_class(tiny_digits, oriented_out):
    cell = run_oriented(["coes"], tiny_digits, oriented_out, set_size=100)["cells"]["coes|0"]
    assert len(cell["cft_per_class"]) == 10 and cell["victim"] == 9
    assert "victim_cft" in cell and "max_non_victim_cft" in cell
    assert "CFT per class" in open(os.path.join(oriented_out, "table.md")).read()
    assert "cft_per_class.png" in os.listdir(os.path.join(oriented_out, "plots"))


def test_list_scenarios_covers_both_seed_papers():
    names = [name for name, _ in experiments.list_scenarios()]
    for name in ("baseline", "random_flip", "targeted_flip", "class_pattern",
                 "class_pattern_defended", "random_flip_sanitized", "targeted_flip_gce",
                 "class_pattern_removal", "random_flip_oracle_drop", "class_pattern_recipe",
                 "targeted_flip_aug_gce", "random_flip_aum_drop", "coeg_single",
                 "coeg_single_fl", "coeg_set", "coeg_set_fl", "coes", "coes_fl1", "coes_fl2"):
        assert name in names
    assert all(description for _, description in experiments.list_scenarios())


def test_parameter_names_have_one_default_each():
    # A --param applies to every chosen scenario that declares it, so a name
    # must mean the same thing (same default) everywhere.
    seen = {}
    for scenario in experiments.SCENARIOS.values():
        for key, value in scenario.params.items():
            assert seen.setdefault(key, value) == value, key


@pytest.mark.parametrize("policy", ["consensus", "relabel"])
def test_sanitized_scenario_scores_its_detection_against_the_flips(tiny_digits, tmp_path, policy):
    results = experiments.run(
        ["random_flip_sanitized"], data=tiny_digits, out=str(tmp_path),
        params={"folds": 2, "policy": policy}, **TINY,
    )
    detection = results["cells"]["random_flip_sanitized|0"]["detection"]
    assert detection["num_poisoned"] == 60
    # Only flagged labels change, so no more can be restored than were flagged.
    assert 0 <= detection["labels_restored"] <= detection["num_flagged"] <= 300


def test_unknown_sanitize_policy_is_rejected(tiny_digits, tmp_path):
    with pytest.raises(experiments.ExperimentError, match=r"`policy` in \('consensus', 'relabel'\)"):
        experiments.run(["random_flip_sanitized"], data=tiny_digits, out=str(tmp_path),
                        params={"policy": "drop-all"}, **TINY)


def test_oracle_drop_trains_on_exactly_the_unflipped_examples(tiny_digits, tmp_path):
    results = experiments.run(
        ["random_flip_oracle_drop"], data=tiny_digits, out=str(tmp_path), **TINY
    )
    cell = results["cells"]["random_flip_oracle_drop|0"]
    # 300 training digits, 20% flipped: the 60 flipped ones are dropped.
    assert cell["poisoned_count"] == 60
    assert cell["examples_kept"] == 240
    assert 0.0 <= cell["accuracy"] <= 1.0


def test_aum_drop_scores_its_detection_and_drops_what_it_flags(tiny_digits, tmp_path):
    results = experiments.run(
        ["random_flip_aum_drop"], data=tiny_digits, out=str(tmp_path), **TINY
    )
    cell = results["cells"]["random_flip_aum_drop|0"]
    detection = cell["detection"]
    assert detection["num_poisoned"] == 60
    assert cell["examples_kept"] == 300 - detection["num_flagged"]


def test_recipe_scenarios_train_with_their_defences(tiny_digits, tmp_path):
    results = experiments.run(
        ["class_pattern_recipe", "targeted_flip_aug_gce"], data=tiny_digits, out=str(tmp_path),
        **TINY,
    )
    cells = results["cells"]
    assert len(cells["class_pattern_recipe|0"]["removal_signal_to_noise"]) == 10
    # The targeted flip needed the baseline's confusion matrix, so it ran first.
    assert "baseline|0" in cells
    assert cells["targeted_flip_aug_gce|0"]["poisoned_count"] == 60


def test_last_epochs_mean_averages_only_the_tail_of_the_curve():
    assert scenarios.last_epochs_mean([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]) == pytest.approx(0.5)
    assert scenarios.last_epochs_mean([0.3, 0.5]) == pytest.approx(0.4)
