"""Transformer LLMs as a workload plug-in (`plugin.LlmWorkload`)."""
