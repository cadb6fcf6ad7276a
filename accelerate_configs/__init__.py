"""Accelerate configs for each kind of hardware: `accelerate launch --config_file ...`; `hf-ft configs` lists them."""
