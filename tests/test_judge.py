"""LLM judges: prompts, majority votes, labels from judgements, consensus filtering, the
OpenAI client's failure path, and judge annotation through a real (tiny) local engine.

python -m pytest tests/test_judge.py -q
"""

import socket

import pyarrow as pa
import pytest

from rwpipe import artifacts
from rwpipe.annotate import _with_judgement, annotate_shard
from rwpipe.annotate.methods import StepLabels
from rwpipe.config import AnnotateConfig, JudgeConfig
from rwpipe.judge import (
    Judgement,
    JudgeUnavailable,
    OpenAIJudge,
    critique_message,
    judge_first_errors,
    judge_outcomes,
    majority,
    outcome_message,
)


class Scripted:
    """A judge backend replying with fixed texts (the algorithm's test double)."""

    def __init__(self, replies):
        self.replies, self.messages = replies, []

    def complete(self, messages, n, temperature, max_tokens, seed):
        self.messages.extend(messages)
        return [self.replies[i % len(self.replies)][:n] for i in range(len(messages))]


def test_prompts_come_from_the_package_templates():
    msg = critique_message("What is 2 + 2?", ["2 + 2 = 5\n\n", "So 5."])
    assert "<paragraph_0>\n2 + 2 = 5\n</paragraph_0>" in msg and "<paragraph_1>" in msg
    assert "index of -1" in msg and "\\boxed{}" in msg
    assert "Reference answer: 4" in outcome_message("q", "s", "4")
    assert "Reference answer" not in outcome_message("q", "s", None)


def test_majority_vote_ties_and_abstentions():
    assert majority(["correct", "incorrect", "correct", None]) == ("correct", 2)
    assert majority([1, 2]) == (None, 1)  # a tie abstains
    assert majority([None, None]) == (None, 0)


def test_judging_votes_over_k_samples():
    backend = Scripted([["\\boxed{1}", "\\boxed{1}", "no idea"]])
    [j] = judge_first_errors(backend, [("q", ["a", "b", "c"])], k=3, temperature=0.7,
                             max_tokens=64, seed=0)  # fmt: skip
    assert (j.value, j.votes, j.parsed, j.raw) == (1, 2, 2, "\\boxed{1}")
    [j] = judge_first_errors(Scripted([["\\boxed{7}"]]), [("q", ["a"])], k=1, temperature=0,
                             max_tokens=64, seed=0)  # fmt: skip
    assert j.value is None and j.raw == "\\boxed{7}"  # out of range: abstain, raw kept
    [v] = judge_outcomes(Scripted([["\\boxed{correct}"]]), [("q", "s", "4")], k=1,
                         temperature=0, max_tokens=64, seed=0)  # fmt: skip
    assert v.value == "correct"


def _cfg(method="judge", mode="critique"):
    return AnnotateConfig(method=method, judge=JudgeConfig(mode=mode))


def test_labels_from_a_judgement():
    empty = StepLabels.empty("outcome_only", 3)
    lab, _ = _with_judgement(_cfg(), empty, Judgement(1, 1, 1, ""), 3, 0)
    assert (lab.status, lab.hard, lab.first_error) == ("judged", [1, 0, None], 1)
    lab, _ = _with_judgement(_cfg(), empty, Judgement(-1, 1, 1, ""), 3, 1)
    assert lab.hard == [1, 1, 1] and lab.first_error == -1
    lab, _ = _with_judgement(_cfg(), empty, Judgement(None, 0, 0, "?"), 3, 0)
    assert lab.status == "abstained" and lab.hard == [None] * 3
    # verdict mode: the judge's verdict is the outcome only where no gold answer exists
    _, outcome = _with_judgement(_cfg(mode="verdict"), empty, Judgement("correct", 1, 1, ""), 3, 0)
    assert outcome == 0
    _, outcome = _with_judgement(_cfg(mode="verdict"), empty, Judgement("correct", 1, 1, ""), 3,
                                 None)  # fmt: skip
    assert outcome == 1


def test_consensus_keeps_labels_only_where_the_first_errors_agree():
    mc = StepLabels("labelled", [1, 0, None], [1.0, 0.0, None], [4, 4, 0], 1)
    kept, _ = _with_judgement(_cfg("consensus"), mc, Judgement(1, 1, 1, ""), 3, 0)
    assert kept is mc
    dropped, _ = _with_judgement(_cfg("consensus"), mc, Judgement(2, 1, 1, ""), 3, 0)
    assert dropped.status == "disagreed" and dropped.hard == [None] * 3
    abstained, _ = _with_judgement(_cfg("consensus"), mc, Judgement(None, 0, 0, ""), 3, 0)
    assert abstained.status == "disagreed"
    with pytest.raises(ValueError, match="critique"):
        AnnotateConfig(method="consensus", judge=JudgeConfig(mode="verdict"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_server_is_one_line_after_the_retries():
    judge = OpenAIJudge(f"http://127.0.0.1:{_free_port()}/v1", "m", retries=2, timeout_s=2,
                        backoff_s=0.01)  # fmt: skip
    with pytest.raises(JudgeUnavailable, match="failed after 3 attempts") as exc:
        judge.complete(["hello"], 1, 0.0, 8, 0)
    assert "\n" not in str(exc.value)


def test_the_api_key_is_read_from_the_named_variable(monkeypatch):
    monkeypatch.setenv("RWPIPE_TEST_KEY", "sk-secret")
    judge = OpenAIJudge("http://127.0.0.1:9/v1", "m", api_key_env="RWPIPE_TEST_KEY")
    assert judge.client.api_key == "sk-secret"
    assert OpenAIJudge("http://127.0.0.1:9/v1", "m").client.api_key == "EMPTY"


def test_judge_annotation_on_a_local_engine_writes_valid_labels(tmp_path):
    from rwpipe.backends.hf import HFGenerator
    from rwpipe.judge import LocalJudge
    from rwpipe.model.tiny import build_tiny_lm
    from rwpipe.verify import VerifierPool

    model = build_tiny_lm(tmp_path / "lm", seed=0)
    judge = LocalJudge(HFGenerator(str(model), device="cpu", seed=0))
    rows = [
        {"problem_id": "p", "sample_idx": i, "split": "train", "question": "What is 2 + 2?",
         "prompt": "<p>", "steps": ["2 + 2 = 4\n\n", "The answer is 4."], "gold": "4",
         "finish_reason": "stop", "completion": "2 + 2 = 4\n\nThe answer is 4."}
        for i in range(2)
    ]  # fmt: skip
    cfg = AnnotateConfig(method="judge", judge=JudgeConfig(max_new_tokens=16))
    with VerifierPool(workers=1) as verifier:
        table, _ = annotate_shard(rows, None, cfg, seed=0, verifier=verifier, sample=True,
                                  judge=judge)  # fmt: skip
    labels = artifacts.validate(table, "labels", "test").to_pylist()
    # a random model never boxes an index: every judgement abstains, its text kept
    assert [r["status"] for r in labels] == ["abstained", "abstained"]
    assert all(r["judge_raw"] is not None and r["judge_value"] is None for r in labels)
    assert all(r["method"] == "judge" and r["outcome"] == 1 for r in labels)
    assert isinstance(table, pa.Table)


def test_probe_command_prints_a_rate_per_key_and_the_rule_verifier_is_zero(tmp_path, write_params):
    from rwpipe.model.tiny import build_tiny_lm
    from rwpipe.probe import MASTER_KEYS
    from tests.conftest import run_rwpipe

    model = build_tiny_lm(tmp_path / "lm", seed=0)
    params = write_params({"prepare": {"n_train": 1, "n_eval": 3},
                           "annotate": {"engine": {"backend": "hf"},
                                        "judge": {"max_new_tokens": 8}}})  # fmt: skip
    run_rwpipe("prepare", tmp_path / "problems.arrow", "--params", params)
    out = tmp_path / "probe.json"
    result = run_rwpipe("probe", tmp_path / "problems.arrow", model, out, "--params", params)
    import json

    got = json.loads(out.read_text())
    assert got["problems"] == 3 and set(got["judge_false_positive"]) == set(MASTER_KEYS)
    assert all(0 <= v <= 1 for v in got["judge_false_positive"].values())
    assert got["rule_mean"] == 0.0 and "rule verifier" in result.stderr
