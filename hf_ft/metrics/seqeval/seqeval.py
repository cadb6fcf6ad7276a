"""seqeval: entity-level precision, recall and F1 of sequence labelling (NER, chunking), plus token accuracy.

Shipped inside hf_ft so that `evaluate.load(<this dir>)` works offline (`evaluate.load("seqeval")` fetches the
script from the Hub). The compute arguments and the result layout are those of the `evaluate-metric/seqeval` Hub
metric: `suffix`, `scheme`, `mode` (`"strict"` with a `scheme` such as `"IOB2"`), `sample_weight`, `zero_division`;
one `{precision, recall, f1, number}` entry per entity type and `overall_precision/recall/f1/accuracy`.
"""

import importlib

import datasets
import evaluate
from seqeval.metrics import accuracy_score, classification_report

_SCHEMES = ("IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU")

_DESCRIPTION = """
seqeval scores sequence labelling by entity (chunk): an entity counts as found only when its type and its whole
span are predicted. Precision, recall and F1 are micro-averaged over entities (the CoNLL-2000/2003 conlleval
definition); `overall_accuracy` is the share of tags (tokens) predicted right, `O` included.
Default mode follows conlleval (an `I-X` without a `B-X` still starts an entity); `mode="strict"` with a `scheme`
counts only entities that are well formed in that scheme.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `str`): Predicted tags, one list per sentence.
    references (`list` of `list` of `str`): Gold tags, one list per sentence, of the same lengths.
    suffix (`bool`, defaults to `False`): Tags carry their prefix at the end (`PER-B`) instead of the start.
    scheme (`str`, optional): One of IOB1, IOB2, IOE1, IOE2, IOBES, BILOU; used by `mode="strict"`.
    mode (`str`, optional): `"strict"` for strict matching under `scheme`; None for conlleval's lenient rules.
    sample_weight (`list` of `float`, optional): Per-sentence weights.
    zero_division (`"warn"`, `0` or `1`, defaults to `"warn"`): The value of an undefined precision/recall/F1
        (no predicted, or no true, entities).

Returns:
    For each entity type: `{"precision", "recall", "f1", "number"}` (`number`: true entities of that type);
    `overall_precision`, `overall_recall`, `overall_f1` (micro over entities) and `overall_accuracy` (tokens).

Example:
    >>> seqeval = hf_ft.metrics.load("seqeval")
    >>> seqeval.compute(predictions=[["B-PER", "I-PER", "O"]], references=[["B-PER", "I-PER", "O"]])["overall_f1"]
    1.0
"""

_CITATION = """
@misc{seqeval,
  title={{seqeval}: A Python framework for sequence labeling evaluation},
  url={https://github.com/chakki-works/seqeval},
  note={Software available from https://github.com/chakki-works/seqeval},
  author={Hiroki Nakayama},
  year={2018},
}
"""


class Seqeval(evaluate.Metric):
    """Entity-level scores computed with `seqeval.metrics.classification_report`."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.List(datasets.Value("string")),
                    "references": datasets.List(datasets.Value("string")),
                }
            ),
            reference_urls=["https://github.com/chakki-works/seqeval"],
        )

    def _compute(
        self, predictions, references, suffix=False, scheme=None, mode=None, sample_weight=None, zero_division="warn"
    ):
        if scheme is not None:
            if scheme not in _SCHEMES:
                raise ValueError(f"Scheme should be one of {list(_SCHEMES)}, got {scheme}")
            scheme = getattr(importlib.import_module("seqeval.scheme"), scheme)
        if mode == "strict" and scheme is None:
            raise ValueError(f'mode="strict" needs a scheme, one of {list(_SCHEMES)}.')
        report = classification_report(
            y_true=references,
            y_pred=predictions,
            suffix=suffix,
            output_dict=True,
            scheme=scheme,
            mode=mode,
            sample_weight=sample_weight,
            zero_division=zero_division,
        )
        report.pop("macro avg", None)
        report.pop("weighted avg", None)
        overall = report.pop("micro avg", None) or {"precision": 0.0, "recall": 0.0, "f1-score": 0.0}
        scores = {
            type_name: {
                "precision": float(score["precision"]),
                "recall": float(score["recall"]),
                "f1": float(score["f1-score"]),
                "number": int(score["support"]),
            }
            for type_name, score in report.items()
        }
        scores["overall_precision"] = float(overall["precision"])
        scores["overall_recall"] = float(overall["recall"])
        scores["overall_f1"] = float(overall["f1-score"])
        scores["overall_accuracy"] = float(accuracy_score(y_true=references, y_pred=predictions))
        return scores
