"""How sure a score is, and whether two runs really differ: bootstrap intervals over a split's examples.

A task describes each scored example as a record (plain JSON data) and gives a scorer that recomputes its headline
metrics on any resample of those records:

    records = [{"id": example_id(text), "reference": "sport", "prediction": "tech", "correct": False, ...}, ...]
    scorer = lambda records: (lambda indices: {"accuracy": ..., "f1": ...})   # the task's own metrics
    intervals(records, scorer, ["accuracy", "f1"], settings)                   # {metric: (low, high)}
    paired_difference(records, earlier_records, scorer, ["accuracy"], settings)

Every record has "id" (what the example is, from its content: `example_id`), "reference" and "prediction" (for
people, and to tell whether the prediction changed) and "correct" (or, where right and wrong do not apply, "error":
lower is better); "input" names the example for people; tasks add what their scorer needs. A paired difference resamples the same examples
for both runs, which is what makes it far tighter than two separate intervals; it is refused when the two runs were
not scored on the same examples with the same references.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy.stats import bootstrap

Record = dict[str, Any]
# From a run's records (this run's or an earlier one's) to its metrics on a resample, given as record indices.
Scorer = Callable[[Sequence[Record]], Callable[[np.ndarray], dict[str, float]]]


@dataclass(frozen=True)
class BootstrapSettings:
    """How intervals are computed: percentile bootstrap over examples, seeded."""

    num_resamples: int = 1000
    confidence_level: float = 0.95
    seed: int = 0

    def describe(self) -> str:
        return (
            f"{self.confidence_level:.0%} percentile bootstrap intervals, {self.num_resamples:,} resamples of the "
            f"split's examples (seed {self.seed})"
        )


@dataclass(frozen=True)
class PairedDifference:
    """This run minus an earlier one, on the same examples."""

    differences: dict[str, tuple[float, float | None, float | None]]  # metric -> (difference, low, high)
    changed: list[dict[str, Any]]  # the examples whose prediction changed, regressions first


def example_id(*parts: str | bytes | None) -> str:
    """A short content hash naming an example: the same text, image bytes or tokens give the same id in any run."""
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)  # length-prefixed: ("ab", "c") != ("a", "bc")
    return digest.hexdigest()[:16]


def intervals(
    records: Sequence[Record], scorer: Scorer, keys: Sequence[str], settings: BootstrapSettings
) -> dict[str, tuple[float, float]]:
    """The bootstrap interval of each metric in `keys` over `records` (fewer than 2 records: none)."""
    if len(records) < 2 or not keys:
        return {}
    statistic = scorer(records)
    # A metric a resample cannot define (a correlation of constant values) is NaN there.
    low, high = _percentile_bootstrap(
        lambda indices: [statistic(indices).get(key, np.nan) for key in keys], len(records), settings
    )
    return {key: (float(a), float(b)) for key, a, b in zip(keys, low, high)}


def same_examples(records: Sequence[Record], earlier: Sequence[Record]) -> str | None:
    """Why two runs' records cannot be paired (another test set, other references, repeated examples), or None."""
    ids = [record["id"] for record in records]
    if len(set(ids)) != len(ids):
        return "the test set holds repeated examples, which cannot be paired by content"
    mine = {record["id"]: record["reference"] for record in records}
    theirs = {record["id"]: record["reference"] for record in earlier}
    if mine.keys() != theirs.keys():
        shared = len(mine.keys() & theirs.keys())
        return (
            f"they were not scored on the same examples ({len(mine)} here, {len(theirs)} there, {shared} in common)"
        )
    relabelled = sum(mine[key] != theirs[key] for key in mine)
    if relabelled:
        return f"{relabelled} of the shared examples have other references there"
    return None


def paired_difference(
    records: Sequence[Record],
    earlier: Sequence[Record],
    scorer: Scorer,
    keys: Sequence[str],
    settings: BootstrapSettings | None,
) -> PairedDifference:
    """This run's metrics minus the earlier run's on the same resamples of the same examples, with their intervals
    (None without `settings` or resamples), and the examples whose prediction changed. Check `same_examples`
    first."""
    position = {record["id"]: i for i, record in enumerate(earlier)}
    aligned = [earlier[position[record["id"]]] for record in records]  # the earlier run's records in this order
    this, that = scorer(records), scorer(aligned)

    def difference(indices: np.ndarray) -> list[float]:
        mine, theirs = this(indices), that(indices)
        return [mine.get(key, np.nan) - theirs.get(key, np.nan) for key in keys]

    everything = np.arange(len(records))
    point = difference(everything)
    low = high = [None] * len(keys)
    if len(records) >= 2 and settings is not None and settings.num_resamples > 0:
        low, high = _percentile_bootstrap(difference, len(records), settings)
    return PairedDifference(
        differences={key: (float(p), _float(a), _float(b)) for key, p, a, b in zip(keys, point, low, high)},
        changed=changed_predictions(records, aligned),
    )


def changed_predictions(records: Sequence[Record], aligned: Sequence[Record]) -> list[dict[str, Any]]:
    """The examples predicted differently by the two runs: regressions (right there, wrong here; or, for records
    with an "error", a larger error here) first, the worst first, then fixes, then answers that changed and stayed
    wrong (or right)."""
    order = {"regression": 0, "fixed": 1, "changed": 2}
    changed = []
    for mine, theirs in zip(records, aligned):
        if mine["prediction"] == theirs["prediction"]:
            continue
        worse = _error(mine) - _error(theirs)
        kind = "regression" if worse > 0 else "fixed" if worse < 0 else "changed"
        changed.append(
            {
                "worse_by": worse,
                "kind": kind,
                "id": mine["id"],
                "input": mine.get("input", ""),
                "reference": mine["reference"],
                "earlier": theirs["prediction"],
                "this_run": mine["prediction"],
            }
        )
    # Stable: test-set order among equal changes. The sort key is not kept: it is the same 1 for every right/wrong flip.
    changed.sort(key=lambda row: (order[row["kind"]], -abs(row["worse_by"])))
    return [{key: value for key, value in row.items() if key != "worse_by"} for row in changed]


def _error(record: Record) -> float:
    return float(record["error"]) if "error" in record else 0.0 if record["correct"] else 1.0


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _percentile_bootstrap(
    statistic: Callable[[np.ndarray], Sequence[float]], size: int, settings: BootstrapSettings
) -> tuple[np.ndarray, np.ndarray]:
    # Percentile, not scipy's default BCa: BCa's jackknife rescores the split once per example, which for mAP or
    # entity F1 on a large test set costs more than the resamples themselves.
    result = bootstrap(
        (np.arange(size),),
        lambda indices: np.asarray(statistic(indices), dtype=np.float64),
        vectorized=False,
        n_resamples=settings.num_resamples,
        confidence_level=settings.confidence_level,
        method="percentile",
        rng=np.random.default_rng(settings.seed),
    )
    return np.atleast_1d(result.confidence_interval.low), np.atleast_1d(result.confidence_interval.high)
