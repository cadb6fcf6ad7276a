"""Arguments of distillation and of `recipes/compress.py`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..args import ConfigError


@dataclass
class DistillationArguments:
    """Knowledge distillation: the model being trained (the student) also learns from a fine-tuned teacher."""

    teacher_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A fine-tuned classifier for the same labels (an hf_ft output dir or a Hub id). Set, the loss is "
            "alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher/T || student/T). Unset trains without a teacher."
        },
    )
    teacher_model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of a Hub teacher."})
    distillation_alpha: float = field(
        default=0.5,
        metadata={"help": "Weight of the cross-entropy on the labels; the teacher's term gets 1 - alpha (1 = no teacher)."},
    )
    distillation_temperature: float = field(
        default=2.0, metadata={"help": "Softmax temperature T of both models in the teacher's term (Hinton et al.)."}
    )

    def __post_init__(self):
        if not 0.0 <= self.distillation_alpha <= 1.0:
            raise ConfigError(f"--distillation_alpha must be in [0, 1], got {self.distillation_alpha}")
        if self.distillation_temperature <= 0:
            raise ConfigError(f"--distillation_temperature must be > 0, got {self.distillation_temperature}")


@dataclass
class CompressionArguments:
    """What `recipes/compress.py` makes from a fine-tuned model, and how the variants are timed."""

    student_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A smaller checkpoint (timm or transformers) to distil the fine-tuned model into. It is also "
            "trained without the teacher, same budget, so the report shows what distillation adds. Unset skips both."
        },
    )
    pruning_method: str | None = field(
        default=None,
        metadata={
            "help": "`unstructured` (L1 magnitude: zeros in place, same shapes) or `structured` (torch-pruning: "
            "removes channels / neurons, a truly smaller model). Unset skips pruning."
        },
    )
    pruning_scope: str = field(
        default="global",
        metadata={"help": "Unstructured pruning: `global` (one threshold over all layers) or `layer` (each layer alike)."},
    )
    pruning_sparsities: list[float] = field(
        default_factory=lambda: [0.3, 0.5, 0.7],
        metadata={
            "help": "Targets in [0, 1), increasing: the share of prunable weights set to zero (unstructured) or of "
            "parameters removed (structured). One variant each."
        },
    )
    pruning_schedule: str = field(
        default="one_shot",
        metadata={
            "help": "`one_shot`: each target pruned from the fine-tuned model. `iterative`: each target from the "
            "previous one (prune, fine-tune, prune more)."
        },
    )
    pruning_finetune_epochs: float = field(
        default=0.0,
        metadata={"help": "Fine-tune this many epochs after each pruning step (0: prune only). Other settings as the students'."},
    )
    pruning_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Peak learning rate of those fine-tunes (a pruned model needs a gentler one than a student "
                  "trained from scratch). Unset: `learning_rate`."},
    )
    quantize_dynamic_int8: bool = field(
        default=True, metadata={"help": "PyTorch post-training dynamic int8 of the fine-tuned model (Linear layers)."}
    )
    export_onnx: bool = field(default=True, metadata={"help": "Export the fine-tuned model to ONNX (fp32)."})
    onnx_quantization: list[str] = field(
        default_factory=lambda: ["dynamic", "static"],
        metadata={
            "help": "ONNX Runtime int8 variants of the export: `dynamic` (weights only) and/or `static` (activations "
            "calibrated on training images). Empty for none."
        },
    )
    onnx_opset: int = field(default=18, metadata={"help": "ONNX opset of the export."})
    onnx_quantization_target: str = field(
        default="auto",
        metadata={
            "help": "The CPU family static int8 is quantized for (ONNX Runtime picks its int8 kernels on the machine "
            "that runs the file): `vnni` (x86 with AVX-512 VNNI, AVX-VNNI or AMX, and ARM: int8 weights), `avx2` "
            "(x86 without VNNI: uint8 weights, whose kernels do not saturate there; exact but slower elsewhere), "
            "`auto` (this CPU's, from /proc/cpuinfo). Set it when the model will run on another machine."
        },
    )
    calibration_samples: int = field(
        default=128, metadata={"help": "Training images (eval preprocessing) that calibrate static int8 quantization."}
    )
    latency_threads: int | None = field(
        default=None, metadata={"help": "CPU threads for latency timing (and stated in the report). Unset: torch's default."}
    )
    latency_batch_sizes: list[int] = field(
        default_factory=lambda: [1, 32], metadata={"help": "Batch sizes whose CPU latency is timed."}
    )
    latency_repeats: int = field(default=10, metadata={"help": "Timed calls per batch size (the median is reported)."})

    def __post_init__(self):
        choices = {
            "pruning_method": (self.pruning_method, (None, "unstructured", "structured")),
            "pruning_scope": (self.pruning_scope, ("global", "layer")),
            "pruning_schedule": (self.pruning_schedule, ("one_shot", "iterative")),
            "onnx_quantization_target": (self.onnx_quantization_target, ("auto", "vnni", "avx2")),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"--{name} must be one of {[a for a in allowed if a]}, got {value!r}")
        unknown = [q for q in self.onnx_quantization if q not in ("dynamic", "static")]
        if unknown:
            raise ConfigError(f"--onnx_quantization takes `dynamic` and/or `static`, got {unknown}")
        if self.onnx_quantization and not self.export_onnx:
            raise ConfigError("--onnx_quantization needs --export_onnx true (it quantizes the export).")
        if self.pruning_finetune_epochs < 0:
            raise ConfigError(f"--pruning_finetune_epochs must be >= 0, got {self.pruning_finetune_epochs}")
        for name in ("calibration_samples", "latency_repeats", "latency_threads"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name} must be > 0, got {value}")
        if not self.latency_batch_sizes or min(self.latency_batch_sizes) <= 0:
            raise ConfigError(f"--latency_batch_sizes must be positive batch sizes, got {self.latency_batch_sizes}")
