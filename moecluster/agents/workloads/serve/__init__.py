"""Workload serve: a served model behind an OpenAI-compatible server, measured under load (see `run`)."""
