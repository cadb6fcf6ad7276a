"""hf_ft: fine-tuning recipes for the Hugging Face stack (transformers, timm, datasets, peft, accelerate, evaluate)."""

__version__ = "0.1.0"
