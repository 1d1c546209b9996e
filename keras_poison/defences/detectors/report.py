"""`DetectionReport`: what every detector returns, and how it is scored.

A detector looks at a training set it did not make and says, for every
example, how suspicious it is (`scores`, higher is more suspicious) and
whether it is flagged (`flagged`). Label detectors also suggest a label per
example. Because every attack of the library returns the ground-truth mask of
what it changed, a report can be scored against it with
`report.evaluate(true_mask)`: precision, recall and F1 of the flagged set,
and the AUROC of the scores (which does not depend on any threshold).

Reports save to `.npz` and load with `allow_pickle=False`: nothing in the file
is ever executed.
"""

import dataclasses
import json
import zipfile

import numpy as np
from scipy import stats
from sklearn import metrics as sk_metrics

from keras_poison.fingerprints import content_keys

_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class DetectionMetrics:
    """A report scored against the ground-truth mask of poisoned examples.

    Attributes:
        precision: share of flagged examples that are poisoned (`nan` when
            nothing is flagged).
        recall: share of poisoned examples that are flagged (`nan` when
            nothing is poisoned).
        f1: harmonic mean of precision and recall (`0` when either is `0`,
            `nan` when either is `nan`).
        auroc: area under the ROC curve of the scores (`nan` when the mask
            holds only one kind of example).
        num_flagged: how many examples were flagged.
        num_poisoned: how many examples the mask marks as poisoned.
    """

    precision: float
    recall: float
    f1: float
    auroc: float
    num_flagged: int
    num_poisoned: int

    def as_dict(self):
        return dataclasses.asdict(self)


class DetectionReport:
    """Per-example suspicion scores and the flagged set of one detector.

    Args:
        scores: float array `(n,)`, higher means more suspicious.
        flagged: bool array `(n,)`, the examples the detector flags.
        suggested_labels: int array `(n,)` or `None`, the label the
            detector believes each example should have (label detectors).
            Defaults to `None`.
        given_labels: int array `(n,)` or `None`, the labels the detector
            was given, kept so a report can be inspected on its own.
            Defaults to `None`.
        detector: str, the name of the detector that made the report.
            Defaults to `"unknown"`.
        details: dict of JSON-serializable extras (thresholds, per-class
            statistics). Defaults to `None`.
        content_keys: int64 array `(n,)` or `None`, each example's content
            key (`keras_poison.fingerprints`), so `Sanitize(report,
            key="content")` finds the flagged examples in any order; see
            `with_content_keys`. Defaults to `None`.

    Example:

    >>> report = DetectionReport(
    ...     scores=np.array([0.9, 0.1, 0.8, 0.2]),
    ...     flagged=np.array([True, False, True, False]),
    ... )
    >>> report.flagged_indices.tolist(), report.ranking[:2].tolist()
    ([0, 2], [0, 2])
    >>> m = report.evaluate(np.array([True, False, False, False]))
    >>> m.precision, m.recall, m.auroc
    (0.5, 1.0, 1.0)
    """

    def __init__(
        self,
        scores,
        flagged,
        suggested_labels=None,
        given_labels=None,
        detector="unknown",
        details=None,
        content_keys=None,
    ):
        self.scores = _as_vector("scores", scores, np.float64)
        if not np.all(np.isfinite(self.scores)):
            raise ValueError("Expected `scores` to be finite. Received: NaN or inf values")
        self.flagged = _as_mask("flagged", flagged, len(self.scores))
        self.suggested_labels = _optional_labels(
            "suggested_labels", suggested_labels, len(self.scores)
        )
        self.given_labels = _optional_labels("given_labels", given_labels, len(self.scores))
        self.detector = str(detector)
        self.details = dict(details or {})
        # Fail now, not at save time, if the details cannot be written.
        json.dumps(self.details)
        self.content_keys = None
        if content_keys is not None:
            keys = np.asarray(content_keys)
            if keys.shape != (len(self.scores),) or keys.dtype != np.int64:
                raise ValueError(
                    f"Expected `content_keys` to be int64 of shape ({len(self.scores)},). "
                    f"Received: shape {keys.shape}, dtype {keys.dtype}"
                )
            self.content_keys = keys

    def with_content_keys(self, x, y):
        """A copy of the report that knows each example by its content.

        Args:
            x: the images the detector was given, in the dtype the stream
                to sanitize carries.
            y: their labels (any format).

        Returns:
            A `DetectionReport` with `content_keys` set, for
            `Sanitize(report, key="content")`.
        """
        keys = content_keys(x, y)
        if len(keys) != self.num_examples:
            raise ValueError(
                f"Expected the {self.num_examples} examples the report was made on. "
                f"Received: {len(keys)} examples"
            )
        return DetectionReport(
            self.scores,
            self.flagged,
            self.suggested_labels,
            self.given_labels,
            self.detector,
            self.details,
            content_keys=keys,
        )

    @property
    def num_examples(self):
        return len(self.scores)

    @property
    def flagged_indices(self):
        """Indices of the flagged examples, in data order."""
        return np.flatnonzero(self.flagged)

    @property
    def ranking(self):
        """All indices, most suspicious first (ties keep data order)."""
        return np.argsort(-self.scores, kind="stable")

    def top(self, k):
        """Indices of the `k` most suspicious examples."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"Expected `k` to be an int >= 0. Received: k={k!r}")
        return self.ranking[:k]

    def evaluate(self, true_mask):
        """Scores the report against the ground truth.

        Args:
            true_mask: bool array `(n,)`, `True` for the poisoned examples
                (the mask an attack's `poison` returns).

        Returns:
            A `DetectionMetrics`.
        """
        truth = _as_mask("true_mask", true_mask, self.num_examples)
        num_flagged = int(self.flagged.sum())
        num_poisoned = int(truth.sum())
        hits = int(np.sum(truth & self.flagged))
        precision = hits / num_flagged if num_flagged else float("nan")
        recall = hits / num_poisoned if num_poisoned else float("nan")
        if np.isnan(precision) or np.isnan(recall):
            f1 = float("nan")
        elif precision + recall == 0:
            f1 = 0.0
        else:
            f1 = 2 * precision * recall / (precision + recall)
        if 0 < num_poisoned < self.num_examples:
            auroc = float(sk_metrics.roc_auc_score(truth, self.scores))
        else:
            auroc = float("nan")
        return DetectionMetrics(precision, recall, f1, auroc, num_flagged, num_poisoned)

    def with_flagged(self, flagged):
        """A copy of the report with another flagged set (e.g. the top k).

        Args:
            flagged: a bool mask `(n,)`, or integer indices of the flagged
                examples (as `top(k)` returns).
        """
        flagged = np.asarray(flagged)
        if flagged.dtype != bool:
            flagged = self._indices_as_mask(flagged)
        return DetectionReport(
            self.scores,
            flagged,
            self.suggested_labels,
            self.given_labels,
            self.detector,
            self.details,
            self.content_keys,
        )

    def _indices_as_mask(self, indices):
        n = self.num_examples
        if indices.size and not np.issubdtype(indices.dtype, np.integer):
            raise TypeError(
                "Expected `flagged` to be a bool mask or integer indices. "
                f"Received: flagged of dtype {indices.dtype}"
            )
        indices = indices.reshape(-1).astype(np.int64)
        if indices.size == n and n > 2 and np.isin(indices, (0, 1)).all():
            # Indices would repeat 0 and 1 n times: this is a 0/1 mask.
            raise ValueError(
                f"`flagged` holds {n} zeros and ones, one per example: a 0/1 mask, "
                "not indices. Pass it as bool (`mask.astype(bool)`), or pass the "
                "flagged examples' indices."
            )
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            raise ValueError(
                f"Expected flagged indices in [0, {n}). Received: indices from "
                f"{int(indices.min())} to {int(indices.max())}"
            )
        mask = np.zeros(n, bool)
        mask[indices] = True
        return mask

    # ------------------------------------------------------------------
    # Files.

    def save(self, path):
        """Writes the report to an `.npz` file (no pickled objects)."""
        arrays = {
            "format_version": np.array(_FORMAT_VERSION),
            "scores": self.scores,
            "flagged": self.flagged,
            "detector": np.array(self.detector),
            "details": np.array(json.dumps(self.details)),
        }
        if self.suggested_labels is not None:
            arrays["suggested_labels"] = self.suggested_labels
        if self.given_labels is not None:
            arrays["given_labels"] = self.given_labels
        if self.content_keys is not None:
            arrays["content_keys"] = self.content_keys
        with open(path, "wb") as file:
            np.savez_compressed(file, **arrays)

    @classmethod
    def load(cls, path):
        """Reads a report written by `save`; never unpickles anything."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(
                f"Could not read a detection report from {path!r}: {error}"
            ) from None
        missing = {"format_version", "scores", "flagged"} - set(arrays)
        if missing:
            raise ValueError(
                f"Expected a detection report file with {sorted(missing)}. "
                f"Received: {path!r} without them"
            )
        version = int(arrays["format_version"])
        if version != _FORMAT_VERSION:
            raise ValueError(
                f"Expected a detection report of format version {_FORMAT_VERSION}. "
                f"Received: version {version} in {path!r}"
            )
        return cls(
            arrays["scores"],
            arrays["flagged"],
            arrays.get("suggested_labels"),
            arrays.get("given_labels"),
            str(arrays.get("detector", "unknown")),
            json.loads(str(arrays.get("details", "{}"))),
            arrays.get("content_keys"),
        )

    def __repr__(self):
        """The detector, the counts and the scalar details; never the arrays.

        Nested details (per-class statistics) are summarized by their size.
        """
        fields = [
            f"detector={self.detector!r}",
            f"num_examples={self.num_examples}",
            f"num_flagged={int(self.flagged.sum())}",
        ]
        if self.suggested_labels is not None:
            fields.append("suggests_labels=True")
        if self.content_keys is not None:
            fields.append("content_keys=True")
        if self.details:
            fields.append(
                "details={"
                + ", ".join(f"{k!r}: {_short_repr(v)}" for k, v in self.details.items())
                + "}"
            )
        return f"DetectionReport({', '.join(fields)})"


def _short_repr(value):
    """`repr` of a scalar detail; `<dict of 3>` / `<list of 10>` for containers."""
    if isinstance(value, dict):
        return f"<dict of {len(value)}>"
    if isinstance(value, (list, tuple)):
        return f"<{type(value).__name__} of {len(value)}>"
    return repr(value)


def _as_vector(name, value, dtype):
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"Expected `{name}` of shape (n,). Received: {name}.shape={array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"Expected `{name}` to hold numbers. Received: {name}.dtype={array.dtype}")
    return array.astype(dtype)


def _as_mask(name, value, length):
    array = np.asarray(value)
    if array.ndim != 1 or len(array) != length:
        raise ValueError(
            f"Expected `{name}` of shape ({length},), one entry per example. "
            f"Received: {name}.shape={array.shape}"
        )
    if array.dtype != bool:
        if not np.isin(array, (0, 1)).all():
            raise ValueError(f"Expected `{name}` to hold booleans. Received: values other than 0/1")
        array = array.astype(bool)
    return array


def _optional_labels(name, value, length):
    if value is None:
        return None
    array = np.asarray(value)
    if array.shape != (length,):
        raise ValueError(
            f"Expected `{name}` of shape ({length},). Received: {name}.shape={array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"Expected `{name}` to hold integer labels. Received: {name}.dtype={array.dtype}")
    if array.size and array.min() < 0:
        raise ValueError(
            f"Expected `{name}` to be class indices >= 0. Received: a label {int(array.min())}"
        )
    return array.astype(np.int64)


def consensus(*reports):
    """The examples every report flags, relabelled only where they agree.

    Two detectors that look at the data differently (confident learning on
    out-of-sample probabilities, deep k-NN on a trained model's features)
    make different mistakes; where both flag an example and both suggest the
    same label, that label is far more often right than either alone. With
    a weak classifier (the CIFAR-10 subset's 65%) one detector alone flags
    many clean examples, and relabelling them does more harm than good
    (docs/benchmarks.md §7).

    Args:
        *reports: two or more `DetectionReport`s on the same examples.

    Returns:
        A `DetectionReport` flagging the examples that every report flags
        and, when the reports suggest labels, whose suggestions all agree;
        its scores are the mean of each report's score ranks in [0, 1].

    Example:

    >>> a = DetectionReport(np.array([.9, .8, .1]), np.array([True, True, False]),
    ...                     suggested_labels=np.array([1, 2, 0]))
    >>> b = DetectionReport(np.array([.7, .9, .2]), np.array([True, True, False]),
    ...                     suggested_labels=np.array([1, 0, 0]))
    >>> consensus(a, b).flagged_indices.tolist()
    [0]
    """
    _check_same_examples(reports)
    flagged = np.logical_and.reduce([r.flagged for r in reports])
    suggestions = [r.suggested_labels for r in reports if r.suggested_labels is not None]
    suggested = None
    if suggestions:
        suggested = suggestions[0]
        flagged &= np.logical_and.reduce([s == suggested for s in suggestions])
    return DetectionReport(
        _mean_rank(reports),
        flagged,
        suggested_labels=suggested,
        given_labels=_given_labels(reports),
        detector="consensus(" + ", ".join(r.detector for r in reports) + ")",
        content_keys=_content_keys(reports),
    )


def rank_average(*reports, num_flagged="mean"):
    """One ranking from several detectors: the mean of their score ranks.

    Two detectors that read different evidence make partly different
    mistakes: `AUMDetector` reads how the model treated each example's own
    label over training, `KNNDetector` the labels of its neighbours in
    feature space. Where `consensus` keeps only what every report flags
    (precise, but it misses what one detector alone finds), this averages
    the reports' ranks (a Borda count, which needs no common score scale)
    and flags the examples that rank highest on average. How many: by
    default the mean of how many the reports flag, each report's own
    estimate of how much of the data is bad.

    Args:
        *reports: two or more `DetectionReport`s on the same examples.
        num_flagged: `"mean"`, or an int >= 0: how many of the examples
            with the highest mean rank are flagged. `"mean"` flags the
            mean of the reports' flagged counts, rounded half to even
            (NumPy's `round`: 2.5 flags 2). Defaults to
            `"mean"`.

    Returns:
        A `DetectionReport` whose scores are the mean of each report's
        score ranks (tied scores share their mean rank), scaled to [0, 1];
        where the mean ties at the cut, data order decides.
        Suggested labels are the first report's that has them, so list
        the detector whose suggestions you trust most first.
        `details["num_flagged"]` is the count flagged.

    Example:

    >>> a = DetectionReport(np.array([.9, .1, .8, .2]), np.array([True, False, True, False]))
    >>> b = DetectionReport(np.array([.6, .2, .1, .9]), np.array([True, False, False, True]))
    >>> combined = rank_average(a, b)
    >>> combined.flagged_indices.tolist(), combined.scores.round(2).tolist()
    ([0, 3], [0.83, 0.17, 0.33, 0.67])
    """
    _check_same_examples(reports)
    if isinstance(num_flagged, str) and num_flagged == "mean":
        count = int(np.round(np.mean([r.flagged.sum() for r in reports])))
    elif isinstance(num_flagged, (int, np.integer)) and not isinstance(num_flagged, bool) and (
        0 <= num_flagged <= reports[0].num_examples
    ):
        count = int(num_flagged)
    else:
        raise ValueError(
            "Expected `num_flagged` to be 'mean' or an int between 0 and the number of "
            f"examples ({reports[0].num_examples}). Received: num_flagged={num_flagged!r}"
        )
    scores = _mean_rank(reports)
    flagged = np.zeros(len(scores), bool)
    flagged[np.argsort(-scores, kind="stable")[:count]] = True
    suggested = next((r.suggested_labels for r in reports if r.suggested_labels is not None), None)
    return DetectionReport(
        scores,
        flagged,
        suggested_labels=suggested,
        given_labels=_given_labels(reports),
        detector="rank_average(" + ", ".join(r.detector for r in reports) + ")",
        details={"num_flagged": count},
        content_keys=_content_keys(reports),
    )


def _check_same_examples(reports):
    if len(reports) < 2 or not all(isinstance(r, DetectionReport) for r in reports):
        raise TypeError(
            "Expected two or more DetectionReports. Received: "
            f"{[type(r).__name__ for r in reports]}"
        )
    sizes = {r.num_examples for r in reports}
    if len(sizes) > 1:
        raise ValueError(
            f"Expected reports on the same examples. Received: sizes {sorted(sizes)}"
        )
    # Reports are combined by position: what they carry of the examples
    # (content keys, the labels they saw) must agree position by position.
    for name in ("content_keys", "given_labels"):
        carried = [(i, getattr(r, name)) for i, r in enumerate(reports)
                   if getattr(r, name) is not None]
        for i, values in carried[1:]:
            first, reference = carried[0]
            differ = np.flatnonzero(np.asarray(values) != np.asarray(reference))
            if differ.size:
                raise ValueError(
                    "Expected reports on the same examples in the same order. "
                    f"Received: reports {first} and {i} differ in `{name}` at example "
                    f"{int(differ[0])} (made on the data in another order?). "
                    "Make every report on the same arrays."
                )


def _content_keys(reports):
    return next((r.content_keys for r in reports if r.content_keys is not None), None)


def _mean_rank(reports):
    """Each example's mean rank over the reports (0 least, 1 most suspicious)."""
    # Ranks put detectors with different score scales on one footing. Tied
    # scores share their mean rank (k-NN's shares of 50 neighbours tie a lot),
    # so data order never decides between equally suspicious examples.
    ranks = [stats.rankdata(r.scores, method="average") - 1 for r in reports]
    return np.mean(ranks, axis=0) / max(reports[0].num_examples - 1, 1)


def _given_labels(reports):
    return next((r.given_labels for r in reports if r.given_labels is not None), None)
