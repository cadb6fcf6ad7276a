"""Confusion matrix: counts of (true class, predicted class) pairs (multiclass, single label).

Shipped inside hf_ft so that `evaluate.load(<this dir>)` works offline; the compute arguments match the
`evaluate-metric/confusion_matrix` Hub metric.
"""

import datasets
import evaluate
from sklearn.metrics import confusion_matrix

_DESCRIPTION = """
The confusion matrix C has C[i, j] = the number of samples of true class i predicted as class j: the diagonal
holds the correct predictions, each off-diagonal cell one kind of mistake.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted class ids.
    references (`list` of `int`): Ground-truth class ids.
    labels (`list` of `int`, optional): The classes of the rows and columns, in order. Pass every class id
        (e.g. `range(num_labels)`) to keep the matrix square over all classes, present or not.
    sample_weight (`list` of `float`, optional): Per-sample weights.
    normalize (`"true"`, `"pred"`, `"all"` or `None`, defaults to `None`): Divide by the row sums (true
        classes), the column sums (predicted classes) or the total; `None` gives counts. Rows or columns with
        no samples stay 0.

Returns:
    confusion_matrix (`numpy.ndarray` of shape (n_labels, n_labels)): Rows are true classes, columns
        predicted classes.

Example:
    >>> cm = hf_ft.metrics.load("confusion_matrix")
    >>> cm.compute(predictions=[0, 1, 1], references=[0, 1, 0])["confusion_matrix"].tolist()
    [[1, 1], [0, 1]]
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


class ConfusionMatrix(evaluate.Metric):
    """Confusion matrix computed with `sklearn.metrics.confusion_matrix`."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
            # numpy in, numpy out: no per-sample Python objects on large eval sets.
            format="numpy",
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.confusion_matrix.html"],
        )

    def _compute(self, predictions, references, labels=None, sample_weight=None, normalize=None):
        matrix = confusion_matrix(
            references, predictions, labels=labels, sample_weight=sample_weight, normalize=normalize
        )
        return {"confusion_matrix": matrix}
