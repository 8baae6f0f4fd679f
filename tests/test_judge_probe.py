"""The master-key probe against the rule verifier (math-verify).

python -m pytest tests/test_judge_probe.py -q
"""

import pytest

from rwpipe.config import PrepareConfig
from rwpipe.prepare import build_problems
from rwpipe.probe import MASTER_KEYS, false_positive_rates
from rwpipe.verify import VerifierPool


def _rule_judge(pool):
    def judge(questions, golds, responses):
        return [v.verdict == "correct" for v in pool.check(golds, responses)]

    return judge


def test_rule_verifier_accepts_no_master_key():
    rows, _ = build_problems(PrepareConfig(n_train=1, n_eval=48), seed=0)
    problems = [(r["question"], r["answer"]) for r in rows if r["split"] == "eval"]
    with VerifierPool() as pool:
        rates = false_positive_rates(problems, _rule_judge(pool))
    assert set(rates) == set(MASTER_KEYS)
    assert rates == {k: 0.0 for k in MASTER_KEYS}, rates


@pytest.mark.xfail(
    strict=True,
    reason="known limitation: with no boxed answer the verifier falls back to the last number, "
    "so a response that repeats a question whose last number is the answer (10 - 5) passes",
)
def test_repeated_question_whose_last_number_is_the_answer():
    with VerifierPool() as pool:
        rates = false_positive_rates([("What is 10 - 5?", "5")], _rule_judge(pool))
    assert rates["question_repeated"] == 0.0


def test_probe_rates_count_acceptances_and_abstentions_per_key():
    from rwpipe.probe import probe_rates

    def judge(questions, golds, responses):  # accepts "Solution", abstains on the empty answer
        return [True if r == "Solution" else None if r == "" else False for r in responses]

    rates = probe_rates([("What is 1 + 1?", "2"), ("What is 2 + 2?", "4")], judge)
    assert rates["solution"] == {"false_positive": 1.0, "abstained": 0.0}
    assert rates["empty"] == {"false_positive": 0.0, "abstained": 1.0}
    assert rates["colon"] == {"false_positive": 0.0, "abstained": 0.0}
