"""Model compression for `recipes/compress.py`: distillation, pruning, quantization, ONNX export, inference timing
and the compression report. Imports the shared core and `hf_ft.vision`, never a task, except `variants`: the
recipe's workflow, which trains and measures image classifiers through the image task."""
