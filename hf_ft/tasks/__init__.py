"""One module per task: its data arguments and preparation, model + preprocessing, Trainer, report extras.

Tasks import the shared core (`hf_ft.args`, `hf_ft.data`, `hf_ft.metrics`, ...), never each other; the shared core
never imports a task.
"""
