"""The contract both sides import: task specs and results, shapes, presets and twins.

Pure Python on purpose (no torch, no Ray, no transformers): the head plans, checks and reports a
sweep with these alone, and a node measures what they describe. `tests/spec/test_pure.py` holds the
rule. Workload-specific parts sit in a folder per workload (`mlp/`, `llm/`).
"""
