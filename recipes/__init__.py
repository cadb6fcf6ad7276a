"""The recipes: one script per task, run as `accelerate launch recipes/<task>.py --config ...` or `hf-ft train <task>`."""
