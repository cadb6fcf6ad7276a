"""Task-free data loading: Hub or local sources and their splits (`sources`), label columns and encoding (`labels`).

Image-only pieces live in `hf_ft.vision`; each task's preparation in `hf_ft.tasks.<task>`.
"""
