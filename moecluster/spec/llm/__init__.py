"""The LLM workload's contract: transformer shapes, presets, twins and memory accounting."""
