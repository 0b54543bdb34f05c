"""Server command templates: `{port}`, `{model}`, `{gpus}` filled word by word, for the servers users run
(vLLM, SGLang, llama.cpp, TGI, Ollama, transformers), and templates refused with the reason."""
from __future__ import annotations

import pytest

from moecluster.workloads.serve.server import render_command
from moecluster.workloads.serve.template import template_problem

#: the commands docs/serving.md gives, as users run them on their clusters
COMMANDS = {
    "vllm": ("vllm serve {model} --port {port} --tensor-parallel-size 1 --disable-log-requests",
             ["vllm", "serve", "Qwen/Qwen3-30B-A3B", "--port", "8123", "--tensor-parallel-size", "1",
              "--disable-log-requests"]),
    "sglang": ("python -m sglang.launch_server --model-path {model} --port {port} --host 127.0.0.1",
               ["python", "-m", "sglang.launch_server", "--model-path", "Qwen/Qwen3-30B-A3B", "--port", "8123",
                "--host", "127.0.0.1"]),
    "llama.cpp": ("llama-server -m {model} --port {port} -ngl 99 --parallel 8",
                  ["llama-server", "-m", "Qwen/Qwen3-30B-A3B", "--port", "8123", "-ngl", "99", "--parallel", "8"]),
    "tgi": ("text-generation-launcher --model-id {model} --port {port}",
            ["text-generation-launcher", "--model-id", "Qwen/Qwen3-30B-A3B", "--port", "8123"]),
    "ollama": ("env OLLAMA_HOST=127.0.0.1:{port} CUDA_VISIBLE_DEVICES={gpus} ollama serve",
               ["env", "OLLAMA_HOST=127.0.0.1:8123", "CUDA_VISIBLE_DEVICES=0,1", "ollama", "serve"]),
    "transformers": ("transformers serve {model} --port {port} --device cpu --continuous-batching",
                     ["transformers", "serve", "Qwen/Qwen3-30B-A3B", "--port", "8123", "--device", "cpu",
                      "--continuous-batching"]),
}


@pytest.mark.parametrize("server", sorted(COMMANDS))
def test_every_documented_server_command_renders_to_its_argument_list(server: str) -> None:
    template, argv = COMMANDS[server]
    assert template_problem(template) is None
    assert render_command(template, port=8123, model="Qwen/Qwen3-30B-A3B", gpus="0,1") == argv


def test_a_model_path_with_spaces_stays_one_argument_and_no_shell_runs() -> None:
    argv = render_command("srv --model {model} --port={port}; rm -rf /", port=1, model="/data/my models/x", gpus="")
    assert argv == ["srv", "--model", "/data/my models/x", "--port=1;", "rm", "-rf", "/"]  # words, never a shell


@pytest.mark.parametrize("template, problem", [
    ("vllm serve {model}", "has no {port}"),
    ("vllm serve {model} --port {prot}", "unknown placeholder {prot}"),
    ("vllm serve {model} --port {port} --x {0}", "unknown placeholder {0}"),
    ("vllm serve 'unclosed --port {port}", "does not split like a shell line"),
    ("vllm --port {port} {model", "malformed placeholder"),
    ("   ", "is empty"),
])
def test_bad_templates_are_refused_naming_why(template: str, problem: str) -> None:
    found = template_problem(template)
    assert found is not None and problem in found
    with pytest.raises(ValueError, match="server command"):
        render_command(template, port=1, model="m", gpus="")
