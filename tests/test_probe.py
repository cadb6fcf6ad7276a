"""The linear probe baseline's refusals (`hf_ft.probe`); its runs are in the image, text and token recipe tests."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hf_ft.args import ConfigError
from hf_ft.probe import linear_probe


@pytest.mark.parametrize("problem_type", ["multi_label_classification", "regression"])
def test_a_model_that_is_not_a_single_label_classifier_is_refused_before_any_feature(problem_type):
    trainer = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(problem_type=problem_type)))
    with pytest.raises(ConfigError, match=f"single-label classification; this model's problem_type is {problem_type}"):
        linear_probe(trainer, {})
