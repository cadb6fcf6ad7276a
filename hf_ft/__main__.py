"""`python -m hf_ft ...` is `hf-ft ...`: what `accelerate launch -m hf_ft train <recipe> ...` runs on each process."""

from .cli import main

main()
