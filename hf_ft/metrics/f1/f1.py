"""F1: the harmonic mean of precision and recall (multiclass, single label).

Shipped inside hf_ft so that `evaluate.load(<this dir>)` works offline; the compute arguments match the
`evaluate-metric/f1` Hub metric, plus `zero_division` (the Hub metric always warns and uses 0).
"""

import datasets
import evaluate
from sklearn.metrics import f1_score

_DESCRIPTION = """
The F1 score is the harmonic mean of precision and recall:
F1 = 2 * (precision * recall) / (precision + recall)
   = 2 TP / (2 TP + FP + FN).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted class ids.
    references (`list` of `int`): Ground-truth class ids.
    labels (`list` of `int`, optional): The classes to score, and their order when `average=None`. Pass every
        class id (e.g. `range(num_labels)`) to get a value for classes missing from this batch.
    pos_label (`int`, defaults to 1): The positive class when `average="binary"`.
    average (`str` or `None`, defaults to `"binary"`): `"binary"` (two classes, score of `pos_label`),
        `"micro"` (global counts), `"macro"` (unweighted mean over classes), `"weighted"` (mean weighted by
        support) or `None` (one score per class, in `labels` order).
    sample_weight (`list` of `float`, optional): Per-sample weights.
    zero_division (`"warn"`, `0`, `1` or `np.nan`, defaults to `"warn"`): The value when the score is
        undefined (a class that is neither in `references` nor predicted); `"warn"` gives 0 and a warning.

Returns:
    f1 (`float`, or `numpy.ndarray` of `float` when `average=None`): 2 TP / (2 TP + FP + FN), averaged as
        `average` says.

Example:
    >>> f1 = hf_ft.metrics.load("f1")
    >>> f1.compute(predictions=[0, 1, 2, 1], references=[0, 1, 1, 2], average="macro")
    {'f1': 0.5}
"""

_CITATION = """
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V. and Thirion, B. and Grisel, O.
          and Blondel, M. and Prettenhofer, P. and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A.
          and Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


class F1(evaluate.Metric):
    """F1 computed with `sklearn.metrics.f1_score`."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
            # numpy in, numpy out: no per-sample Python objects on large eval sets.
            format="numpy",
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"],
        )

    def _compute(
        self, predictions, references, labels=None, pos_label=1, average="binary", sample_weight=None,
        zero_division="warn",
    ):
        score = f1_score(
            references, predictions, labels=labels, pos_label=pos_label, average=average,
            sample_weight=sample_weight, zero_division=zero_division,
        )
        return {"f1": score if average is None else float(score)}
