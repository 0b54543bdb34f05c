"""Decoder-only transformer LLMs (transformers' Mixtral, Qwen2-MoE, Qwen3-MoE; Llama, Mistral, Qwen2,
Qwen3 as their dense twins), built from configs with random weights, measured apart in prefill
and decode; `plugin.LlmWorkload` is the head side.

Its pure-Python parts (shapes, presets, twins, memory) live in `moecluster.spec.llm`, so the head
plans sweeps without torch; the node-side parts (`build`, `engine`, `experts`, `expert_parallel`,
`reference`, `forms`, `workload`) import transformers only when a model is built
(`pip install 'moecluster[llm]'`).
"""
