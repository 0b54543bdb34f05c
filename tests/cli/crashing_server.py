"""A real server that crashes under load: runs the command after `--` (a real OpenAI-compatible server),
copies its output through, and after `AFTER` chat completions in its access log kills it (SIGKILL) and
exits 1 — the way a server dies of an out-of-memory error mid-window. Used by the serve end-to-end test.

    python crashing_server.py AFTER -- transformers serve MODEL --port PORT ...
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    after, command = int(argv[0]), argv[argv.index("--") + 1:]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    assert child.stdout is not None
    seen = 0
    for raw in child.stdout:
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
        if b"POST /v1/chat/completions" in raw:
            seen += 1
            if seen >= after:
                print(f"crashing_server: killing the server after {seen} chat completions", flush=True)
                os.killpg(child.pid, signal.SIGKILL)
                return 1
    return child.wait()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
