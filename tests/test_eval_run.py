"""`rwpipe.eval.run` on a small rollouts artifact without reward models: the metrics it
returns, the files it writes, and its one-line input errors.

python -m pytest tests/test_eval_run.py -q
"""

import json

import pyarrow as pa
import pytest

from rwpipe import artifacts
from rwpipe.config import BaseConfig, EvalConfig, SearchConfig
from rwpipe.errors import InputError
from rwpipe.eval import run
from rwpipe.schemas import SPECS

BASE = BaseConfig(seed=0, device="cpu")


def _rollouts(path, hits: dict[str, list[bool]], split: str = "eval", tokens: int = 10):
    """A rollouts artifact: per problem, one sample per entry of `hits` (correct or not); the
    wrong samples all answer "1", the right ones "4"."""
    rows = [
        {"problem_id": pid, "sample_idx": i, "split": split, "question": f"q {pid}",
         "prompt": f"<p>{pid}", "completion": "a\n\nb", "token_ids": [1] * tokens,
         "logprobs": [-0.5] * tokens, "finish_reason": "stop", "num_tokens": tokens,
         "steps": ["a\n\n", "b"], "pred": "4" if ok else "1", "gold": "4",
         "verdict": "correct" if ok else "incorrect", "seed": 0}
        for pid, oks in hits.items() for i, ok in enumerate(oks)
    ]  # fmt: skip
    table = pa.Table.from_pylist(rows, schema=SPECS["rollouts"].schema)
    artifacts.write_artifact(table, path, "rollouts")
    return path


def test_run_without_reward_models_returns_and_writes_the_metrics(tmp_path):
    rollouts = _rollouts(tmp_path / "r.arrow", {"a": [True, True, True, False],
                                                "b": [False, False, True, False]})  # fmt: skip
    rl = _rollouts(tmp_path / "rl.arrow", {"a": [True] * 4, "b": [True] * 4}, tokens=20)
    out = tmp_path / "eval"
    metrics = run(EvalConfig(), BASE, rollouts=rollouts, out=out, rl_rollouts=rl)
    policy = metrics["policy"]
    assert (policy["problems"], policy["samples_per_problem"]) == (2, 4)
    assert policy["pass@1"] == pytest.approx((3 / 4 + 1 / 4) / 2)
    # a: 1 - C(1,2)/C(4,2) = 1; b: 1 - C(3,2)/C(4,2) = 1/2
    assert policy["pass@2"] == pytest.approx(0.75) and policy["pass@4"] == 1.0
    assert policy["mean_tokens"] == 10
    assert metrics["policy_rl"]["pass@1"] == 1.0 and metrics["policy_rl"]["mean_tokens"] == 20
    assert metrics["rl_vs_base"]["delta"] == pytest.approx(0.5)
    # N = 4 is every sample: the vote is exact (a: "4" wins, b: "1" wins)
    assert metrics["best_of_n_size"] == 4 and set(metrics["best_of_n"]) == {"pass@1", "majority"}
    assert metrics["best_of_n"]["majority"] == 0.5
    assert not {"pairwise", "search", "processbench", "processbench_critic"} & set(metrics)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert len((out / "bon.csv").read_text().splitlines()) == 1 + 2 * 3  # 2 rules x N = 1, 2, 4
    assert (out / "bon.png").stat().st_size > 0
    assert (out / "report.md").read_text().startswith("# rwpipe eval report")


def test_run_checks_inputs_before_anything_loads(tmp_path):
    rollouts = _rollouts(tmp_path / "r.arrow", {"a": [True, False]})
    other = _rollouts(tmp_path / "o.arrow", {"z": [True]})
    out = tmp_path / "eval"
    cases = [
        (EvalConfig(split="train"), {}, "no rollouts in split train"),
        (EvalConfig(), {"rl_rollouts": other}, "no problem in common"),
        (EvalConfig(search=SearchConfig(problems=1)), {}, "needs --policy DIR and --prm DIR"),
        (EvalConfig(), {"orm": tmp_path / "nope"}, "nope: not a model directory"),
        (EvalConfig(), {"policy": tmp_path / "nope"}, "nope: not a model directory"),
    ]
    for cfg, extra, expect in cases:
        with pytest.raises(InputError, match=expect):
            run(cfg, BASE, rollouts=rollouts, out=out, **extra)
    assert not out.exists()
