"""What a window served, counted from request records: the pipeline-filled edge, tokens spread over their
stream chunks, responses by end time, input tokens by first token, latency percentiles and in-flight."""
from __future__ import annotations

import pytest

from moecluster.workloads.serve.load import RequestRecord, request_body
from moecluster.workloads.serve.windows import (completion_tokens, percentiles, pipeline_filled,
                                                       serve_window, token_source)


def record(sent: float, chunks: list[float], ended: float, completion: int | None = None,
           prompt: int | None = None) -> RequestRecord:
    return RequestRecord(prompt="a b c", sent_s=sent, chunks=chunks, text=["x"] * len(chunks), ended_s=ended,
                         prompt_tokens=prompt, completion_tokens=completion)


def test_the_pipeline_is_filled_when_concurrency_responses_have_ended() -> None:
    records = [record(0, [1], 3), record(0, [1], 1.5), record(0, [1], 2)]
    assert pipeline_filled(records, 3) == 3
    assert pipeline_filled(records, 2) == 2
    assert pipeline_filled(records[:1], 2) is None


def test_a_window_counts_tokens_by_chunk_arrival_responses_by_end_and_inputs_by_first_token() -> None:
    # two requests in flight over [0, 10): each streams 4 chunks carrying 8 tokens (usage), 5 prompt tokens
    a = record(0.0, [1.0, 2.0, 3.0, 4.0], 4.5, completion=8, prompt=5)
    b = record(4.5, [5.0, 6.0, 7.0, 12.0], 12.5, completion=8, prompt=5)
    w = serve_window([a, b], 2.0, 10.0)
    assert w.output_tokens == (3 + 3) * 2  # a's chunks at 2, 3, 4 and b's at 5, 6, 7; 2 tokens a chunk
    assert w.responses == 1  # only a ended inside
    assert w.input_tokens == 5  # b's first token came inside; a's before
    assert w.ttft_s.p50 == pytest.approx(1.0)  # a: sent 0, first chunk 1
    assert w.tpot_s.p50 == pytest.approx(3.0 / 7)  # a: 3 s from first to last chunk over 7 more tokens
    assert w.itl_s.p50 == pytest.approx(0.5)  # a's 1 s gaps, 2 tokens a chunk
    assert w.in_flight == pytest.approx(((4.5 - 2.0) + (10.0 - 4.5)) / 8.0)
    assert w.running_batch is None


def test_token_counts_come_from_usage_else_the_tokenizer_else_the_chunks() -> None:
    with_usage, without = record(0, [1, 2], 3, completion=5), record(0, [1, 2], 3)
    assert completion_tokens(with_usage, None) == 5
    assert completion_tokens(without, lambda text: 7) == 7
    assert completion_tokens(without, None) == 2
    assert token_source([with_usage], None) == "usage"
    assert token_source([with_usage, without], lambda text: 1) == "tokenizer"
    assert token_source([without], None).startswith("stream chunks")


def test_percentiles_interpolate_and_are_absent_for_no_values() -> None:
    p = percentiles([float(v) for v in range(101)])
    assert (p.p50, p.p90, p.p99) == (50.0, 90.0, 99.0)
    assert percentiles([]).p50 is None


def test_a_fixed_output_asks_for_exactly_max_tokens_and_a_natural_one_only_caps_them() -> None:
    natural, fixed = request_body("m", "hi", 64, "natural"), request_body("m", "hi", 64, "fixed")
    assert natural["max_tokens"] == 64 and natural["stream"] and natural["stream_options"] == {"include_usage": True}
    assert "ignore_eos" not in natural and fixed["ignore_eos"] is True and fixed["min_tokens"] == 64
