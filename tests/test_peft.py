"""PEFT layer: every method on a transformers ViT, a timm BatchNorm convnet and a BERT-like text classifier.

Each method x model pair is trained briefly on a learnable toy task, then checked for what users rely on: the
loss falls, only adapter/head/BatchNorm weights move, a saved adapter reloads to the same logits, a merged
model (in memory and saved as a plain checkpoint) gives the same logits as the adapter model.
"""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils.other import ModulesToSaveWrapper
from torch import nn
from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

from hf_ft.args import ModelArguments, PeftArguments
from hf_ft.errors import InputError
from hf_ft.peft import (
    SUPPORTED_METHODS,
    adapter_size_bytes,
    apply_peft,
    auto_target_modules,
    build_peft_config,
    load_adapter_model,
    quantization_config,
    save_adapter,
    save_merged,
)
from hf_ft.tasks.image_classification import load_image_classifier

LABELS = ["cat", "dog", "fox"]
FAMILIES = ("vit", "timm", "bert")
# Plain LoRA plus LoRA with every switch on, then the other methods.
VARIANTS = {
    "lora": dict(peft_method="lora"),
    "lora-dora-rslora-gaussian": dict(peft_method="lora", use_dora=True, use_rslora=True, init_lora_weights="gaussian"),
    **{method: dict(peft_method=method) for method in SUPPORTED_METHODS if method != "lora"},
}
BERT_VOCAB, SEQ_LEN, N_EXAMPLES, STEPS = 40, 8, 24, 40


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A 2-layer BERT sequence classifier (3 labels), saved like a Hub checkpoint; fed random token ids.

    No dropout, and weights at a trained model's scale (BERT's 0.02 init leaves a tiny pooled output that 40
    steps barely move).
    """
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-bert"
    config = BertConfig(
        vocab_size=BERT_VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=SEQ_LEN, num_labels=len(LABELS), hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, initializer_range=0.2,
    )
    BertForSequenceClassification(config).save_pretrained(path)
    return path


def _checkpoint(request, family: str):
    return request.getfixturevalue({"vit": "tiny_vit_dir", "timm": "tiny_timm_dir", "bert": "tiny_bert_dir"}[family])


def _load_base(family: str, path) -> nn.Module:
    """A fresh base model for `family`, loaded through the same path users take."""
    if family == "bert":
        return AutoModelForSequenceClassification.from_pretrained(path)
    model, _ = load_image_classifier(ModelArguments(model_name_or_path=str(path)), LABELS)
    return model


def _toy_task(family: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Learnable data: images around a per-class mean image; token sequences drawn from per-class vocabularies."""
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(N_EXAMPLES) % len(LABELS)
    if family == "bert":
        per_class = (BERT_VOCAB - 1) // len(LABELS)
        offsets = torch.randint(0, per_class, (N_EXAMPLES, SEQ_LEN), generator=generator)
        return {"input_ids": 1 + labels[:, None] * per_class + offsets}, labels
    means = torch.randn(len(LABELS), 3, 32, 32, generator=generator)
    noise = torch.randn(N_EXAMPLES, 3, 32, 32, generator=generator)
    return {"pixel_values": means[labels] + noise}, labels


def _logits(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**inputs).logits


def _train(model: nn.Module, inputs, labels) -> list[float]:
    """Full-batch AdamW on the toy task; returns the loss of every step."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    losses = []
    for _ in range(STEPS):
        loss = nn.functional.cross_entropy(model(**inputs).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module", params=[(f, v) for f in FAMILIES for v in VARIANTS], ids=lambda p: f"{p[0]}-{p[1]}")
def trained(request, tmp_path_factory):
    """One method on one model: wrapped, snapshot of its frozen weights, trained, adapter saved."""
    family, variant = request.param
    checkpoint = _checkpoint(request, family)
    torch.manual_seed(0)
    model = apply_peft(_load_base(family, checkpoint), PeftArguments(lora_r=4, lora_alpha=8, **VARIANTS[variant]))
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    adapter_before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    inputs, labels = _toy_task(family)
    losses = _train(model, inputs, labels)
    adapter_dir = tmp_path_factory.mktemp("adapter")
    save_adapter(model, adapter_dir)
    return SimpleNamespace(
        family=family, checkpoint=checkpoint, model=model, inputs=inputs, losses=losses, frozen=frozen,
        adapter_before=adapter_before, adapter_dir=adapter_dir, logits=_logits(model, inputs),
    )


def test_training_lowers_loss(trained):
    assert trained.losses[-1] < 0.5 * trained.losses[0], trained.losses


def test_only_adapter_head_and_batchnorm_train(trained):
    model = trained.model
    prefix = model.base_model.prefix  # lora_, hada_, lokr_, ia3_, oft_
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert prefix in name or "modules_to_save" in name, f"{name} trains but is no adapter/saved module"
    for name, before in trained.frozen.items():
        torch.testing.assert_close(dict(model.named_parameters())[name], before, rtol=0, atol=0, msg=name)
    adapter = {n: p for n, p in trained.adapter_before.items() if prefix in n}
    assert adapter, "no adapter parameters"
    moved = [n for n, before in adapter.items() if not torch.equal(dict(model.named_parameters())[n], before)]
    assert len(moved) == len(adapter), f"adapter weights that never moved: {set(adapter) - set(moved)}"


def test_saved_adapter_reloads_to_same_logits(trained):
    config = json.loads((trained.adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(trained.checkpoint)
    if trained.family == "bert":
        reloaded = PeftModel.from_pretrained(_load_base("bert", trained.checkpoint), trained.adapter_dir)
    else:
        reloaded = load_adapter_model(None, trained.adapter_dir, LABELS)  # base taken from adapter_config.json
    torch.testing.assert_close(_logits(reloaded, trained.inputs), trained.logits)


def test_merged_model_gives_same_logits(trained, tmp_path):
    merged = copy.deepcopy(trained.model).merge_and_unload()
    assert not any(isinstance(m, (BaseTunerLayer, ModulesToSaveWrapper)) for m in merged.modules())
    torch.testing.assert_close(_logits(merged, trained.inputs), trained.logits, rtol=1e-4, atol=1e-4)

    save_merged(trained.model, tmp_path)
    auto_class = AutoModelForSequenceClassification if trained.family == "bert" else AutoModelForImageClassification
    plain = auto_class.from_pretrained(tmp_path)
    assert not isinstance(plain, PeftModel)
    torch.testing.assert_close(_logits(plain, trained.inputs), trained.logits, rtol=1e-4, atol=1e-4)
    # save_merged merges a copy: the adapter model is untouched.
    torch.testing.assert_close(_logits(trained.model, trained.inputs), trained.logits, rtol=0, atol=0)


def _adapted_modules(model: PeftModel) -> dict[str, nn.Module]:
    """Name (relative to the base model) -> base layer of every module that got an adapter."""
    return {
        name.removeprefix("base_model.model."): module.get_base_layer()
        for name, module in model.named_modules()
        if isinstance(module, BaseTunerLayer)
    }


def test_auto_targets_vit_are_attention_and_mlp(tiny_vit_dir):
    model = _load_base("vit", tiny_vit_dir)
    assert set(auto_target_modules(model)) == {"q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"}
    adapted = _adapted_modules(apply_peft(model, PeftArguments(peft_method="lora")))
    assert len(adapted) == 2 * 6  # 2 layers x 6 linear layers
    assert not any(name.startswith(("classifier", "vit.embeddings")) for name in adapted)


def test_auto_targets_bert_skip_pooler_and_head(tiny_bert_dir):
    model = _load_base("bert", tiny_bert_dir)
    assert {"query", "key", "value"} <= set(auto_target_modules(model))
    adapted = _adapted_modules(apply_peft(model, PeftArguments(peft_method="lora")))
    assert {name.rsplit(".", 1)[-1] for name in adapted} == {"query", "key", "value", "dense"}
    assert len(adapted) == 2 * 6
    assert all(name.startswith("bert.encoder.layer.") for name in adapted)


def test_auto_targets_timm_convnet_are_block_convs(tiny_timm_dir):
    model = _load_base("timm", tiny_timm_dir)
    block_convs = {
        name for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and name.startswith("timm_model.layer")
    }
    adapted = _adapted_modules(apply_peft(model, PeftArguments(peft_method="lora")))
    assert set(adapted) == block_convs  # every block conv; not the stem (conv1.*), not the head (fc)
    assert all(isinstance(m, nn.Conv2d) for m in adapted.values())


def test_head_and_batchnorm_are_saved_in_full(tiny_timm_dir):
    model = _load_base("timm", tiny_timm_dir)
    batchnorms = {name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    peft_model = apply_peft(model, PeftArguments(peft_method="lora"))
    wrapped = {
        name.removeprefix("base_model.model.")
        for name, m in peft_model.named_modules()
        if isinstance(m, ModulesToSaveWrapper)
    }
    assert wrapped == batchnorms | {"timm_model.fc"}


def test_transformers_head_in_modules_to_save(tiny_vit_dir):
    peft_args = PeftArguments(peft_method="ia3", modules_to_save=["layernorm"])
    config = build_peft_config(_load_base("vit", tiny_vit_dir), peft_args)
    assert config.modules_to_save == ["classifier", "layernorm"]
    assert config.feedforward_modules == {"fc2"} and config.feedforward_modules <= config.target_modules


def test_user_targets_list_and_regex(tiny_vit_dir):
    model = _load_base("vit", tiny_vit_dir)
    config = build_peft_config(model, PeftArguments(peft_method="lora", target_modules=["q_proj", "v_proj"]))
    assert config.target_modules == {"q_proj", "v_proj"}
    first_q = PeftArguments(peft_method="lora", target_modules=[r".*\.0\..*q_proj"])
    adapted = _adapted_modules(apply_peft(model, first_q))
    assert list(adapted) == ["vit.layers.0.attention.q_proj"]


def test_lora_switches_reach_lora_config(tiny_vit_dir):
    model = _load_base("vit", tiny_vit_dir)
    config = build_peft_config(
        model, PeftArguments(peft_method="lora", lora_r=8, lora_alpha=32, lora_dropout=0.1, use_dora=True,
                             use_rslora=True, init_lora_weights="false")
    )
    assert (config.r, config.lora_alpha, config.lora_dropout) == (8, 32, 0.1)
    assert config.use_dora and config.use_rslora and config.init_lora_weights is False
    config = build_peft_config(model, PeftArguments(peft_method="lora", init_lora_weights="True"))
    assert config.init_lora_weights is True
    with pytest.raises(InputError, match="bogus"):
        apply_peft(model, PeftArguments(peft_method="lora", init_lora_weights="bogus"))


def test_unmatched_targets_are_input_errors(tiny_vit_dir):
    with pytest.raises(InputError, match="no_such_layer"):
        apply_peft(_load_base("vit", tiny_vit_dir), PeftArguments(peft_method="lora", target_modules=["no_such_layer"]))


def test_adapter_is_much_smaller_than_model(tiny_vit_dir, tmp_path):
    model = apply_peft(_load_base("vit", tiny_vit_dir), PeftArguments(peft_method="lora", lora_r=2))
    save_adapter(model, tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file()
    assert adapter_size_bytes(tmp_path) < (tiny_vit_dir / "model.safetensors").stat().st_size / 3


def test_unknown_method_lists_supported(tiny_vit_dir):
    with pytest.raises(InputError, match="lora, loha, lokr, ia3, oft"):
        build_peft_config(_load_base("vit", tiny_vit_dir), PeftArguments(peft_method="prefix_tuning"))


def test_quantization_config_only_when_asked():
    assert quantization_config(PeftArguments(peft_method="lora")) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="QLoRA may work here: this checks the CPU-only refusal")
def test_qlora_on_cpu_is_refused():
    with pytest.raises(InputError, match="QLoRA needs a CUDA GPU and bitsandbytes"):
        quantization_config(PeftArguments(peft_method="lora", load_in_4bit=True))


def test_container_head_is_saved_by_its_linear_layer():
    """transformers ResNet's head is Sequential(Flatten, Linear): saving the Sequential breaks merging (loha)."""
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    model = ResNetForImageClassification(config)
    peft_model = apply_peft(model.eval(), PeftArguments(peft_method="loha", lora_r=2))
    assert "classifier.1" in peft_model.peft_config["default"].modules_to_save
    inputs = {"pixel_values": torch.randn(2, 3, 32, 32)}
    merged = copy.deepcopy(peft_model).merge_and_unload()
    torch.testing.assert_close(_logits(merged, inputs), _logits(peft_model, inputs))


def test_oft_on_convnext_without_1x1_convs_is_refused():
    from transformers import ConvNextConfig, ConvNextForImageClassification

    config = ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=3)
    model = ConvNextForImageClassification(config)
    with pytest.raises(InputError, match="OFT adapts only Linear layers and 1x1 convolutions"):
        build_peft_config(model, PeftArguments(peft_method="oft"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="QLoRA needs a CUDA GPU")
def test_qlora_trains_a_4bit_vit_on_gpu(tiny_vit_dir):
    pytest.importorskip("bitsandbytes")
    args = PeftArguments(peft_method="lora", lora_r=4, load_in_4bit=True)
    base, _ = load_image_classifier(
        ModelArguments(model_name_or_path=str(tiny_vit_dir)), ["a", "b", "c"], quantization_config=quantization_config(args)
    )
    assert getattr(base, "is_loaded_in_4bit", False)
    model = apply_peft(base, args)  # from_pretrained already placed the 4-bit weights on the GPU
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    torch.manual_seed(0)
    pixel_values = torch.randn(16, 3, 32, 32, device="cuda")
    labels = (pixel_values.mean(dim=(1, 2, 3)) > 0).long()
    losses = []
    for _ in range(30):
        loss = model(pixel_values=pixel_values, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.fixture(scope="module")
def tiny_distilbert_mlm(tmp_path_factory):
    """A DistilBERT saved as its pre-training (masked-LM) checkpoint, as distilbert-base-uncased is: it holds no
    `pre_classifier`, which DistilBertForSequenceClassification puts before its classifier."""
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("distilbert_mlm")
    DistilBertForMaskedLM(DistilBertConfig(dim=32, hidden_dim=64, n_layers=2, n_heads=2, vocab_size=100)).save_pretrained(path)
    return path


def test_distilbert_pre_classifier_trains_and_reloads_with_the_adapter(tiny_distilbert_mlm, tmp_path):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_distilbert_mlm, num_labels=3)
    model = apply_peft(model, PeftArguments(peft_method="lora", lora_r=4), task_type="SEQ_CLS")
    assert any(isinstance(m, ModulesToSaveWrapper) for n, m in model.named_modules() if n.endswith("pre_classifier"))
    with torch.no_grad():  # stands in for training: the reload must carry what the run changed
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                parameter.add_(0.1)
    save_adapter(model, tmp_path)
    torch.manual_seed(123)  # another random initialisation of everything the adapter does not hold
    reloaded = load_adapter_model(str(tiny_distilbert_mlm), tmp_path, ["a", "b", "c"])
    inputs = torch.tensor([[1, 5, 7, 9, 2]])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(input_ids=inputs).logits, reloaded(input_ids=inputs).logits, atol=1e-6)


def test_head_only_training_trains_the_new_layers_in_front_of_the_head(tiny_distilbert_mlm):
    from hf_ft.freezing import set_trainable

    model = AutoModelForSequenceClassification.from_pretrained(tiny_distilbert_mlm, num_labels=3)
    set_trainable(model, 0)
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"pre_classifier", "classifier"}


def _tiny_gpt2_classifier():
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    config = GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=50, n_positions=16, pad_token_id=0, num_labels=3)
    return GPT2ForSequenceClassification(config).eval()


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_gpt2_conv1d_layers_take_lora_and_ia3_and_merge_exactly(method):
    """GPT-2's linear layers are transformers' Conv1D (weights stored as (in, out)): LoRA and IA3 adapt them with
    fan_in_fan_out, and the merged model computes what the adapter model does."""
    model = _tiny_gpt2_classifier()
    assert auto_target_modules(model, method) == ["c_attn", "c_fc", "c_proj"]
    peft_model = apply_peft(model, PeftArguments(peft_method=method, lora_r=4), task_type="SEQ_CLS").eval()
    assert peft_model.peft_config["default"].fan_in_fan_out
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if parameter.requires_grad and "score" not in name:
                parameter.add_(0.05)  # stands in for training
        inputs = torch.tensor([[3, 7, 11, 2, 9]])
        adapted = peft_model(input_ids=inputs).logits
        assert not torch.allclose(adapted, _tiny_gpt2_classifier()(input_ids=inputs).logits)
        assert torch.allclose(adapted, peft_model.merge_and_unload()(input_ids=inputs).logits, atol=1e-5)


def test_gpt2_conv1d_is_refused_clearly_by_methods_peft_cannot_apply_to_it():
    with pytest.raises(InputError, match="Found no layer in the blocks of GPT2ForSequenceClassification to put a loha"):
        apply_peft(_tiny_gpt2_classifier(), PeftArguments(peft_method="loha"), task_type="SEQ_CLS")
