"""Served models: a model behind an OpenAI-compatible server, measured under load (`run`);
`plugin.ServeWorkload` is the head side."""
