"""Every Python block of README.md, the docs' home page and the guides runs as written.

The blocks of one page run top to bottom in one namespace (a page's later
block may continue an earlier one, and says so), in a fresh working
directory. To keep the suite short, the fixture shrinks what the snippets
cannot: `keras_poison.datasets.load` returns a stratified few hundred
examples of each split, and `Model.fit` runs at most one epoch. Nothing in
the snippets themselves is changed.

A block that cannot run here (it needs several machines) is marked on the
line before it with `<!-- snippet: not run, REASON -->`; the marker is
reported in the test's id, so it stays visible.
"""

import pathlib
import re
import warnings

import keras
import numpy as np
import pytest

from keras_poison import datasets

REPO = pathlib.Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", REPO / "docs" / "index.md", *sorted((REPO / "docs" / "guides").glob("*.md"))]
BLOCK = re.compile(r"(<!-- snippet: not run, (?P<reason>[^>]*)-->\s*\n)?```python\n(?P<code>.*?)```", re.S)
TRAIN_EXAMPLES, TEST_EXAMPLES = 600, 200


def blocks(page):
    """`(code, reason_not_run)` for each Python block of `page`, in order."""
    text = page.read_text(encoding="utf-8")
    return [(m.group("code"), m.group("reason")) for m in BLOCK.finditer(text)]


def _small(x, y, size):
    """The first `size` examples in a class-stratified order (every class kept)."""
    order = np.argsort(_rank_within_class(y), kind="stable")
    keep = np.sort(order[:size])
    return x[keep], y[keep]


def _rank_within_class(y):
    ranks = np.empty(len(y), np.int64)
    for k in np.unique(y):
        members = np.flatnonzero(y == k)
        ranks[members] = np.arange(len(members))
    return ranks


@pytest.fixture
def small_runs(monkeypatch, tmp_path):
    load = datasets.load

    def small_load(*args, **kwargs):
        (x_train, y_train), (x_test, y_test) = load(*args, **kwargs)
        return _small(x_train, y_train, TRAIN_EXAMPLES), _small(x_test, y_test, TEST_EXAMPLES)

    monkeypatch.setattr(datasets, "load", small_load)
    fit = keras.Model.fit

    def short_fit(self, *args, **kwargs):
        kwargs["epochs"] = min(kwargs.get("epochs", 1), 1)
        kwargs.setdefault("verbose", 0)
        kwargs["verbose"] = 0
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", short_fit)
    monkeypatch.chdir(tmp_path)


def _page_id(page):
    return str(page.relative_to(REPO))


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_page_snippets_run_as_written(page, small_runs):
    code = blocks(page)
    if not code:
        pytest.skip(f"{_page_id(page)} has no Python block")
    namespace = {"__name__": "__snippets__"}
    for number, (source, reason) in enumerate(code, 1):
        if reason is not None:
            continue  # documented in the page beside the block
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                exec(compile(source, f"{_page_id(page)} block {number}", "exec"), namespace)
            except Exception as error:
                pytest.fail(
                    f"{_page_id(page)}, Python block {number} fails as written: "
                    f"{type(error).__name__}: {error}\n--- block ---\n{source}"
                )


def test_not_run_markers_say_why():
    for page in PAGES:
        for _, reason in blocks(page):
            assert reason is None or reason.strip(), f"{_page_id(page)}: a not-run marker without a reason"
