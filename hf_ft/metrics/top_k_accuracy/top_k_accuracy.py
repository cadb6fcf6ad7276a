"""Top-k accuracy: the fraction of samples whose true class is among the k highest-scored classes.

Shipped inside hf_ft so that `evaluate.load(<this dir>)` works offline. There is no `evaluate-metric` Hub
metric of this name; the compute arguments are those of `sklearn.metrics.top_k_accuracy_score`.
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import top_k_accuracy_score

_DESCRIPTION = """
Top-k accuracy counts a prediction as correct when the true class is among the k classes with the highest
scores. Top-1 accuracy is plain accuracy. Ties between scores are broken arbitrarily.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): One row of per-class scores per sample (logits or
        probabilities, shape (n_samples, n_classes)).
    references (`list` of `int`): Ground-truth class ids.
    k (`int`, defaults to 5): How many of the highest-scored classes count as a hit.
    normalize (`bool`, defaults to `True`): If False, return the number of hits instead of their fraction.
    sample_weight (`list` of `float`, optional): Per-sample weights.
    labels (`list` of `int`, optional): The class of each score column. Needed when some classes are absent
        from `references`: pass `range(n_classes)`.

Returns:
    top_k_accuracy (`float`): The fraction (or count) of samples whose true class is among the top k.

Example:
    >>> top_k = hf_ft.metrics.load("top_k_accuracy")
    >>> top_k.compute(predictions=[[0.5, 0.2, 0.3], [0.1, 0.3, 0.6]], references=[2, 0], k=2, labels=[0, 1, 2])
    {'top_k_accuracy': 0.5}
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


class TopKAccuracy(evaluate.Metric):
    """Top-k accuracy computed with `sklearn.metrics.top_k_accuracy_score`."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int32")}
            ),
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.top_k_accuracy_score.html"
            ],
        )

    def _compute(self, predictions, references, k=5, normalize=True, sample_weight=None, labels=None):
        score = top_k_accuracy_score(
            references, np.asarray(predictions, dtype=np.float32), k=k, normalize=normalize,
            sample_weight=sample_weight, labels=labels,
        )
        return {"top_k_accuracy": float(score)}
