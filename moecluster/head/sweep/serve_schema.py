"""The `serve:` section of a sweep of `workload: serve`: served models in pairs, prompts, output policy, load.

```yaml
workload: serve
serve:
  pairs:
    - name: qwen3
      moe: {name: qwen3-30b-a3b, model: Qwen/Qwen3-30B-A3B, params_total: 30.5e9, params_active: 3.3e9,
            command: "vllm serve {model} --port {port}"}
      dense:
        - {name: qwen3-32b, match: total, model: Qwen/Qwen3-32B, params_total: 32.8e9,
           command: "vllm serve {model} --port {port}"}
  prompts: default            # or {file: prompts.jsonl, limit: 200}, or {synthetic: {words: 256, count: 64}}
  max_tokens: 256
  output: natural             # or fixed (vLLM/SGLang: ignore_eos + min_tokens)
  concurrency: [1, 8, 32]     # a grid axis: requests kept in flight (closed loop)
  # or, instead: request_rate: [0.5, 2, 8]   # requests/s arriving (open loop, Poisson), a grid axis
  #              burstiness: 1.0             # gamma gaps' shape (1: Poisson), max_in_flight: 64, arrival_seed: 0
```

Each served model gives either `command` (a template with `{port}`, `{model}`, `{gpus}`; the node starts
it) or `url` (a server already running on the node). Parameter counts are the user's (moecluster cannot
count a served model's weights); they feed the seed's normalisations only. Validated strictly like the
rest of the sweep: unknown keys, wrong types and impossible values are one line naming the key.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from moecluster.workloads.serve.template import template_problem

from moecluster.head.sweep.bounds import MAX_COUNT, MAX_NAME_CHARS, MAX_SEED
from moecluster.head.sweep.fields import NAME_PATTERN, Axis, Count, FieldProblem, _Strict, _unique

MAX_PROMPTS = 10_000
MAX_PROMPT_CHARS = 100_000
MAX_COMMAND_CHARS = 4000
MAX_PARAMS = 10**15
Params = Annotated[int, Field(gt=0, le=MAX_PARAMS)]
MAX_RATE = 1e6  # requests per second: far past any server, short of a load generator that only spins
OPEN_LOOP_KEYS = ("burstiness", "max_in_flight", "arrival_seed")
#: The committed default prompts (`serve/prompts.jsonl`): varied in length and kind (question, code,
#: summary, list, chat), so responses' lengths vary as a real chat load's do.
DEFAULT_PROMPTS = Path(__file__).resolve().parent / "serve_prompts.jsonl"


def _params(value: Any) -> Any:
    """A parameter count written as `30.5e9` is read as a whole number: YAML gives a float, or (no dot before
    the exponent, YAML 1.1) a string; anything else is left to the strict check, which names it."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?[eE]\+?[0-9]+", value.strip()):
        value = float(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class ServedModel(_Strict):
    """One served model: how to reach it and its parameter counts."""

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_CHARS)
    model: str = Field(min_length=1, max_length=1000)
    command: Optional[str] = Field(default=None, max_length=MAX_COMMAND_CHARS)
    url: Optional[str] = Field(default=None, max_length=1000, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    params_total: Params
    params_active: Optional[Params] = None  # a dense model's: its total
    match: Optional[Literal["total", "active"]] = None  # a dense model's: which size of the MoE it matches
    # this server's own bound on becoming healthy (a large model loads for minutes); absent: the section's
    startup_timeout_s: Optional[float] = Field(default=None, gt=0, le=86_400)

    @field_validator("params_total", "params_active", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        return _params(value)

    @model_validator(mode="after")
    def _reachable(self) -> "ServedModel":
        if (self.command is None) == (self.url is None):
            raise FieldProblem((), "give exactly one of command (moecluster starts the server) or url"
                               " (a server already running on the node)")
        if self.command is not None:
            problem = template_problem(self.command)
            if problem:
                raise FieldProblem(("command",), problem)
        if self.params_active is not None and self.params_active > self.params_total:
            raise FieldProblem(("params_active",), f"{self.params_active:,} is more than params_total"
                               f" ({self.params_total:,})")
        return self

    @property
    def active(self) -> int:
        return self.params_active if self.params_active is not None else self.params_total


class ServedPair(_Strict):
    """An MoE served model beside its dense comparison(s), measured alternately on the same GPUs."""

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_CHARS)
    moe: ServedModel
    dense: list[ServedModel] = Field(min_length=1, max_length=8)

    @model_validator(mode="after")
    def _sides(self) -> "ServedPair":
        if self.moe.match is not None:
            raise FieldProblem(("moe", "match"), "is a dense model's key (which size of the MoE it matches)")
        if self.moe.params_active is None:
            raise FieldProblem(("moe", "params_active"), "an MoE needs its active parameters per token")
        seen: set[str] = set()
        for i, d in enumerate(self.dense):
            label = d.match or d.name
            if label in seen:
                raise FieldProblem(("dense", i, "match"), f"two dense models match {label!r}; give each its own"
                                   " match (total, active) or leave match out")
            seen.add(label)
        names = [self.moe.name] + [d.name for d in self.dense]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise FieldProblem((), f"two served models are named {dup[0]!r}")
        return self


class PromptFile(_Strict):
    """Prompts from a file: JSONL of `{"prompt": ...}` (or `{"text": ...}`) lines, or a ShareGPT JSON list
    (`[{"conversations": [{"from": "human", "value": ...}, ...]}, ...]`: each first human turn); the first
    `limit`. A relative path is read from the sweep file's directory."""

    file: str = Field(min_length=1, max_length=4096)
    limit: int = Field(default=200, gt=0, le=MAX_PROMPTS)


class SyntheticLengths(_Strict):
    words: Count
    count: int = Field(default=32, gt=0, le=MAX_PROMPTS)


class SyntheticPrompts(_Strict):
    """`count` prompts of `words` words each, drawn from a fixed vocabulary (deterministic)."""

    synthetic: SyntheticLengths


class ServeSection(_Strict):
    """The `serve:` section (see the module's docstring)."""

    pairs: list[ServedPair] = Field(min_length=1, max_length=100)
    prompts: Union[Literal["default"], PromptFile, SyntheticPrompts] = "default"
    max_tokens: int = Field(default=256, gt=0, le=1_000_000)
    output: Literal["natural", "fixed"] = "natural"
    # the load, a grid axis: one of concurrency (closed loop; neither given: [1]) or request_rate (open loop)
    concurrency: Optional[Axis[Annotated[int, Field(gt=0, le=MAX_COUNT)]]] = None
    request_rate: Optional[Axis[Annotated[float, Field(gt=0, le=MAX_RATE)]]] = None
    burstiness: float = Field(default=1.0, gt=0, le=1000)  # open loop: the gamma gaps' shape; 1 is Poisson
    max_in_flight: Optional[int] = Field(default=None, gt=0, le=MAX_COUNT)  # open loop: cap on requests sent
    arrival_seed: int = Field(default=0, ge=0, le=MAX_SEED)  # open loop: the arrivals' seed, the same every side
    startup_timeout_s: float = Field(default=600.0, gt=0, le=86_400)
    request_timeout_s: float = Field(default=300.0, gt=0, le=86_400)

    @field_validator("concurrency", "request_rate", mode="after")
    @classmethod
    def _unique_levels(cls, value: Optional[list[Any]]) -> Optional[list[Any]]:
        return None if value is None else _unique(value)

    @model_validator(mode="after")
    def _one_load(self) -> "ServeSection":
        if self.concurrency is not None and self.request_rate is not None:
            raise FieldProblem(("request_rate",), "give concurrency (requests kept in flight) or request_rate"
                               " (requests/s arriving), not both")
        if self.request_rate is None:
            given = [k for k in OPEN_LOOP_KEYS if k in self.model_fields_set
                     and getattr(self, k) != ServeSection.model_fields[k].default]
            if given:
                raise FieldProblem((given[0],), "is a key of an open-loop load: it needs request_rate")
        return self

    @property
    def load_axis(self) -> Literal["concurrency", "request_rate"]:
        """The grid axis of the load: `request_rate` where given, else `concurrency`."""
        return "request_rate" if self.request_rate is not None else "concurrency"

    def load_levels(self) -> list[tuple[int, float | None]]:
        """Each load of the grid as (concurrency, request_rate): (8, None) closed loop, (0, 2.5) open loop."""
        if self.request_rate is not None:
            return [(0, float(r)) for r in self.request_rate]
        return [(c, None) for c in (self.concurrency or [1])]

    @model_validator(mode="after")
    def _names(self) -> "ServeSection":
        names = [p.name for p in self.pairs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise FieldProblem(("pairs", names.index(dup[0], names.index(dup[0]) + 1), "name"),
                               f"two pairs are named {dup[0]!r}")
        return self


def owner(loc: tuple[str | int, ...]) -> type[_Strict]:
    """The model a key path below `serve` ends in: `pairs[0].moe` is a `ServedModel`, etc."""
    keys = [k for k in loc if isinstance(k, str)]
    if keys[:1] == ["pairs"]:
        return ServedModel if keys[1:2] in (["moe"], ["dense"]) else ServedPair
    if keys[:1] == ["prompts"]:
        return SyntheticLengths if keys[1:2] == ["synthetic"] else PromptFile
    return ServeSection


def _prompt_of(item: Any, where: str) -> str:
    if isinstance(item, dict):
        if isinstance(item.get("prompt"), str):
            return str(item["prompt"])
        if isinstance(item.get("text"), str):
            return str(item["text"])
        turns = item.get("conversations") or item.get("messages")
        if isinstance(turns, list):
            for turn in turns:
                if isinstance(turn, dict) and turn.get("from", turn.get("role")) in ("human", "user"):
                    value = turn.get("value", turn.get("content"))
                    if isinstance(value, str):
                        return value
    raise ValueError(f"{where}: no prompt (a JSONL line needs \"prompt\" or \"text\"; a ShareGPT entry a"
                     " human turn)")


def read_prompt_file(path: Path, limit: int) -> tuple[str, ...]:
    """The first `limit` prompts of a JSONL or ShareGPT file; ValueError naming the file and line."""
    try:
        if path.stat().st_size > 512 * 2**20:
            raise ValueError(f"{path}: larger than 512 MiB")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    prompts: list[str] = []
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON: {exc.msg} at line {exc.lineno}") from None
        for i, item in enumerate(items[:limit] if isinstance(items, list) else []):
            prompts.append(_prompt_of(item, f"{path}: entry {i}"))
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if len(prompts) >= limit:
                break
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not a JSON line: {exc.msg}") from None
            prompts.append(_prompt_of(item, f"{path}:{n}"))
    if not prompts:
        raise ValueError(f"{path}: holds no prompt")
    too_long = next((i for i, p in enumerate(prompts) if len(p) > MAX_PROMPT_CHARS or not p.strip()), None)
    if too_long is not None:
        raise ValueError(f"{path}: prompt {too_long + 1} is empty or longer than {MAX_PROMPT_CHARS:,} characters")
    return tuple(prompts)


_WORDS = ("energy expert token router dense sparse batch server memory bandwidth model layer weight cache"
          " request latency throughput power counter window prompt answer question reason").split()


def synthetic_prompts(words: int, count: int) -> tuple[str, ...]:
    """`count` prompts of `words` words each, a fixed pattern per prompt (no randomness: the same every run)."""
    return tuple(" ".join(_WORDS[(i * 7 + j * (i + 3)) % len(_WORDS)] for j in range(words)) for i in range(count))


def prompts_of(section: ServeSection) -> tuple[str, ...]:
    """The prompts the section asks for (ValueError naming the file where one cannot be read)."""
    p = section.prompts
    if isinstance(p, PromptFile):
        return read_prompt_file(Path(p.file), p.limit)
    if isinstance(p, SyntheticPrompts):
        return synthetic_prompts(p.synthetic.words, p.synthetic.count)
    return read_prompt_file(DEFAULT_PROMPTS, MAX_PROMPTS)
