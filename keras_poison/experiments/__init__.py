"""Reproducible experiments: the scenario runner behind `keras-poison run`.

`run(scenarios, dataset=..., ...)` trains (or fine-tunes) a model for every
scenario × seed *cell*, writes `results.json` after every cell (resumable),
then `table.md` (seed 000's table and the class-oriented tables) and PNG
plots. `SCENARIOS` is the registry (`list_scenarios()` gives name and
one-line description of each).

Example:

```python
from keras_poison import experiments

results = experiments.run(
    ["baseline", "random_flip", "targeted_flip"],
    dataset="digits", epochs=5, seeds=3, out="runs/digits",
)
print(results["summary"]["targeted_flip"]["accuracy"])
```

`merge(folders, out=...)` combines runs made in parallel (one process per
seed or per group of scenarios) into one `results.json`, table and plots.
"""

from keras_poison.experiments.merge import merge
from keras_poison.experiments.runner import ExperimentError
from keras_poison.experiments.runner import run
from keras_poison.experiments.runner import summarize
from keras_poison.experiments.scenarios import SCENARIOS
from keras_poison.experiments.scenarios import Scenario
from keras_poison.experiments.scenarios import list_scenarios

__all__ = [
    "ExperimentError", "SCENARIOS", "Scenario", "list_scenarios", "merge", "run", "summarize",
]
