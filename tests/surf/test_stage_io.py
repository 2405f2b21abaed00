"""Resumable, chunked JSON-lines stages."""
from __future__ import annotations

import pytest

from mmrag.surf.stage_io import StageError, chunk_slice, parse_chunk, read_jsonl, read_stage, run_chunked_stage, run_stage

INPUTS = [{"qid": f"q{i}", "x": i} for i in range(10)]
KEY = lambda r: r["qid"]  # noqa: E731


def square(batch):
    return [{"qid": r["qid"], "y": r["x"] ** 2} for r in batch]


def test_chunks_cover_the_inputs_in_order():
    assert [x for i in range(3) for x in chunk_slice(list(range(10)), i, 3)] == list(range(10))
    assert parse_chunk("2/8") == (2, 8)
    for bad in ("8/8", "1", "a/b", "0/0"):
        with pytest.raises(StageError):
            parse_chunk(bad)


def test_interrupted_stage_resumes_without_redoing_work(tmp_path):
    seen = []

    def crash_on_third_batch(batch):
        seen.extend(r["qid"] for r in batch)
        if len(seen) > 6:
            raise KeyboardInterrupt
        return square(batch)

    out = tmp_path / "s.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_stage(INPUTS, out, crash_on_third_batch, KEY, batch_size=3)
    with open(out, "a") as f:
        f.write('{"qid": "q6", "y": 3')  # a line cut off by the crash
    calls = []
    rows = run_stage(INPUTS, out, lambda b: calls.extend(b) or square(b), KEY, batch_size=3)
    assert [r["qid"] for r in calls] == ["q6", "q7", "q8", "q9"]
    assert [(r["key"], r["y"]) for r in rows] == [(f"q{i}", i * i) for i in range(10)]


def test_chunked_parts_merge_in_input_order_and_need_all_parts(tmp_path):
    run_chunked_stage(INPUTS, tmp_path, "sq", square, KEY, chunk=(1, 3), batch_size=2)
    with pytest.raises(StageError, match="chunk 0/3 of stage 'sq' is missing or unfinished"):
        read_stage(tmp_path, "sq")
    for i in (2, 0):
        run_chunked_stage(INPUTS, tmp_path, "sq", square, KEY, chunk=(i, 3), batch_size=2)
    assert [r["y"] for r in read_stage(tmp_path, "sq")] == [i * i for i in range(10)]
    assert len(read_jsonl(tmp_path / "sq.part1of3.jsonl")) == 3


def test_missing_stage_is_named(tmp_path):
    with pytest.raises(StageError, match="no output of stage 'initial'"):
        read_stage(tmp_path, "initial")
