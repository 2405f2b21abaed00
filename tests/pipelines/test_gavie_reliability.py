"""GAVIE judge reliability on the tiny world with an HTTP judge (the local stub server)."""
from __future__ import annotations

import json
import random

import pytest
from scipy.stats import spearmanr

from mmrag.cli.run_gavie import main
from mmrag.common.tool_config import load_tool_config
from mmrag.datasets.world import generate_world
from mmrag.pipelines.gavie import corrupt, run_gavie, spearman, spearman_interval
from tests.helpers.chat_stub import ChatStub

GOOD = "Answer 1\nRelevancy: 7\nReason: fine\nAccuracy: 7\nReason: fine"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("gavie") / "tiny"
    generate_world("tiny", 0, out, progress=False)
    return out


def judge_reply(body):
    # a bare "Yes." answer gets prose instead of grades: a parse failure
    return "I think the answer is fine." if "Answer 1: Yes." in body["messages"][-1]["content"] else GOOD


def test_corrupt_swaps_every_term_within_its_group():
    groups = [["teal", "red"], ["dotted", "striped"], ["left", "right"]]
    assert corrupt("The dotted creature is teal, left of a tree.", groups, random.Random(0)) == \
        "The striped creature is red, right of a tree."
    assert corrupt("Nothing to swap.", groups, random.Random(0)) == "Nothing to swap."


def test_spearman_by_hand_and_against_scipy():
    # ranks differ at two neighbouring places: 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    x, y = [0, 5, 5, 10, 2, 2, 7], [1, 4, 6, 9, 2, 3, 3]
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    out = spearman_interval(x, y, 500, 0)
    assert out["low"] <= out["rho"] <= out["high"] and out["n"] == 7
    const = spearman_interval([1, 2, 3], [5, 5, 5], 100, 0)
    assert const["degenerate"] == 100 and const["rho"] != const["rho"]     # nan: no correlation with a constant


def test_run_against_an_http_judge_with_a_parse_failure_and_a_rerun_from_cache(world, tmp_path):
    with ChatStub(reply=judge_reply) as stub:
        cfg = load_tool_config("gavie", None, [
            f"world_dir={world}", "split=test", "sample=6", f"output_dir={tmp_path / 'out'}", "n_boot=200",
            f"judge={{type: openai, url: '{stub.url}', model: stub, cache_dir: '{tmp_path / 'cache'}', backoff_s: 0.0}}"])
        report = run_gavie(cfg, log=lambda _m: None)
        sent = len(stub.requests)
        grades = [json.loads(l) for l in (tmp_path / "out" / "grades.jsonl").read_text().splitlines()]
        assert sent == len(grades) == report["answers"] > 6
        yes = [g for g in grades if g["kind"] == "bare_yes"]
        assert yes and all(g["answer"] == "Yes." and g["llm"]["failure"] for g in yes)
        assert report["llm"]["parse_failures"] == len(yes)
        assert report["llm"]["parse_failure_rate"] == pytest.approx(len(yes) / len(grades))
        assert report["llm"]["accuracy"]["mean"] == 7.0 and report["complete"] is True
        # the mean absolute difference, recomputed from the written grades
        pairs = [(g["oracle"]["accuracy"], g["llm"]["accuracy"]) for g in grades
                 if g["oracle"]["accuracy"] is not None and g["llm"]["accuracy"] is not None]
        mad = report["agreement"]["accuracy"]["mean_abs_diff"]
        assert mad["mean"] == pytest.approx(sum(abs(o - m) for o, m in pairs) / len(pairs))
        # the oracle ranks the reference above the corrupted answer
        kinds = report["by_kind"]["oracle"]
        assert kinds["reference"]["accuracy"] == 10 and kinds["corrupted"]["accuracy"] < 10
        # the rerun is answered by the cache
        run_gavie(cfg, log=lambda _m: None)
        assert len(stub.requests) == sent


def test_failed_judge_requests_make_an_incomplete_report_and_exit_2(world, tmp_path, capsys):
    with ChatStub(reply=lambda body: GOOD) as stub:
        out = tmp_path / "out"
        # every request for the first sampled item fails (its prompt names its question)
        cfg_args = [f"--world={world}", f"--out={out}", "split=test", "sample=2", "answer_kinds=[reference]",
                    "n_boot=100", f"judge={{type: openai, url: '{stub.url}', model: stub, max_retries: 1, "
                    "backoff_s: 0.0}"]
        first = run_gavie(load_tool_config("gavie", None, [f"world_dir={world}", "split=test", "sample=2",
                                                           "answer_kinds=[reference]", f"output_dir={tmp_path / 'x'}",
                                                           f"judge={{type: openai, url: '{stub.url}', model: stub}}"]),
                          log=lambda _m: None)
        row = json.loads((tmp_path / "x" / "grades.jsonl").read_text().splitlines()[0])
        prompt = next(r["last_message"] for r in stub.requests if f"Answer 1: {row['answer']}" in r["last_message"])
        stub.script(prompt, [500, 500])
        assert main(cfg_args) == 2
        printed = capsys.readouterr().out
        report = json.loads((out / "report.json").read_text())
        assert report["complete"] is False and report["llm"]["judge_errors"] == 1
        assert f"failed: {row['question_id']} (reference): judge error: HTTP 500" in printed
        assert first["complete"] is True


def test_config_errors_name_the_key(world, tmp_path):
    with pytest.raises(Exception, match="judge"):
        run_gavie(load_tool_config("gavie", None, [f"world_dir={world}", f"output_dir={tmp_path}"]))
    with pytest.raises(Exception, match="answer_kinds"):
        run_gavie(load_tool_config("gavie", None, [f"world_dir={world}", "split=test", "answer_kinds=[great]",
                                                   f"output_dir={tmp_path}",
                                                   "judge={type: openai, url: 'http://127.0.0.1:9/v1', model: m}"]))


def test_the_endpoint_config_as_the_readme_runs_it(world, tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_API_KEY", "sk-readme")
    with ChatStub(reply=lambda body: GOOD) as stub:
        cfg = load_tool_config("gavie", "eval_configs/gavie_small_endpoint.yaml", [
            f"world_dir={world}", "split=test", "sample=3", "n_boot=100", f"output_dir={tmp_path / 'out'}",
            f"judge.url={stub.url}", f"judge.cache_dir={tmp_path / 'cache'}"])
        report = run_gavie(cfg, log=lambda _m: None)
        assert report["complete"] and report["llm"]["accuracy"]["mean"] == 7.0
        assert {r["authorization"] for r in stub.requests} == {"Bearer sk-readme"}
        assert {r["body"]["model"] for r in stub.requests} == {"judge-model"}


def test_the_local_config_loads():
    cfg = load_tool_config("gavie", "eval_configs/gavie_small_local.yaml", ["judge_mode=expected"])
    assert cfg["judge"]["type"] == "local" and cfg["judge"]["path"] == "assets/smollm2-135m-instruct"
