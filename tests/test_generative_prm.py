"""The generative PRM: its training sequences (request + templated critique, verdicts at known
positions) round-trip through the critique parser, and a tiny model fine-tuned on a separable
set scores correct steps above incorrect ones, through the same Scorer every consumer uses.

python -m pytest tests/test_generative_prm.py -q
"""

import pyarrow as pa
import pytest
import torch

from rwpipe import artifacts
from rwpipe.config import LoraConfig, OptimConfig, TrainPRMConfig
from rwpipe.critique import (
    encode_critique,
    format_critique,
    parse_critique,
    verdict_tokens,
    verification_request,
)
from rwpipe.model.tiny import _tiny_config, build_tiny_tokenizer
from rwpipe.score import Scorer, Solution
from rwpipe.train import train_reward_model

STEPS = ["2+2=4\n\n", "4*3=12\n\n", "12-5=8\n\n", "so 8"]
GOOD, BAD = "@@@@", "%%%%"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.mark.parametrize("verdicts", [[1, 1, 0], [1, 1, 1, 1], [0]])
def test_critique_sequence_round_trips(tokenizer, verdicts):
    ids, prompt_len, positions = encode_critique(tokenizer, "What is it?", STEPS, verdicts)
    critique = tokenizer.decode(ids[prompt_len:], skip_special_tokens=True)
    assert critique == format_critique(verdicts)
    first = verdicts.index(0) if 0 in verdicts else -1
    assert parse_critique(critique, len(STEPS)) == (verdicts, first)
    # every step is shown in the request, whatever the critique judges
    request = tokenizer.decode(ids[:prompt_len], skip_special_tokens=True)
    assert verification_request("What is it?", STEPS).splitlines()[-1] in request
    # the token after each verdict position is that verdict's first token
    good, bad = verdict_tokens(tokenizer)
    assert [ids[p + 1] for p in positions] == [good if y else bad for y in verdicts]
    assert ids[-1] == tokenizer.eos_token_id


def test_a_long_solution_is_cut_from_the_end(tokenizer):
    full, _, positions = encode_critique(tokenizer, "Q?", STEPS, [1, 1, 1, 1])
    cut, prompt_len, kept = encode_critique(tokenizer, "Q?", STEPS, [1, 1, 1, 1], len(full) - 1)
    assert len(cut) <= len(full) - 1 and 0 < len(kept) < len(positions)
    critique = tokenizer.decode(cut[prompt_len:], skip_special_tokens=True)
    assert critique == format_critique([1] * len(kept))


def _row(pid, idx, steps, hard, outcome):
    return {
        "problem_id": pid, "sample_idx": idx, "split": "train", "question": f"task {pid}",
        "prompt": "<Q>", "steps": steps, "gold": "1", "pred": None,
        "verdict": "correct" if outcome else "incorrect", "outcome": outcome, "method": "mc",
        "status": "labelled", "step_hard": hard,
        "step_soft": [None if h is None else float(h) for h in hard],
        "step_visits": [4] * len(steps), "first_error": -1, "completions": 0, "tokens": 0,
        "judge_value": None, "judge_raw": None,
    }  # fmt: skip


def _separable(problems: int) -> pa.Table:
    """Steps "@@@@" are correct, steps "%%%%" wrong (characters the request's own words never
    use), at either position; labels unknown after the first error, as annotate writes them."""
    rows = []
    for p in range(problems):
        rows.append(_row(f"p{p}", 0, [GOOD], [1], 1))
        rows.append(_row(f"p{p}", 1, [BAD], [0], 0))
        rows.append(_row(f"p{p}", 2, [GOOD + "\n\n", BAD], [1, 0], 0))
        rows.append(_row(f"p{p}", 3, [GOOD + "\n\n", GOOD], [1, 1], 1))
    return artifacts.validate(pa.Table.from_pylist(rows), "labels", "test")


def _small_lm(path):
    """The tiny tokenizer with a model just big enough to learn the set (hidden 64)."""
    from transformers import LlamaForCausalLM

    tok = build_tiny_tokenizer()
    config = _tiny_config(tok)
    config.hidden_size, config.intermediate_size, config.head_dim = 64, 128, 16
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_fine_tuned_generative_prm_scores_correct_steps_higher(tmp_path):
    cfg = TrainPRMConfig(
        kind="generative", eval_fraction=0.25, lora=LoraConfig(enabled=False),
        optim=OptimConfig(epochs=15, lr=1e-2, batch_size=4, checkpoint_every=1000, max_length=512),
    )  # fmt: skip
    _, metrics = train_reward_model(
        _separable(12), _small_lm(tmp_path / "lm"), tmp_path / "gprm", cfg, seed=0,
        device="cpu", where="labels.arrow", fingerprint="f",
    )  # fmt: skip
    assert metrics["kind"] == "generative_prm" and metrics["objective"] == "sft"
    assert metrics["step_auc"] >= 0.9
    scorer = Scorer(tmp_path / "gprm", device=torch.device("cpu"))
    assert (scorer.format, scorer.kind) == ("rwpipe", "generative_prm")
    solutions = [Solution("task new", "<Q>", steps) for steps in
                 ([GOOD], [BAD], [GOOD + "\n\n", BAD], [GOOD + "\n\n", GOOD])]  # fmt: skip
    (_, [good]), (_, [bad]), (_, good_bad), (_, good_good) = scorer.score(solutions)
    assert good > bad + 0.5 and good_good[1] > good_bad[1] + 0.5
    # ProcessBench-format items (the critic protocol's input) score the same way
    from rwpipe.eval import processbench

    [pb] = processbench.score_items(scorer, [{"problem": "task new", "steps": [GOOD, BAD]}])
    assert pb == pytest.approx(good_bad, abs=1e-4)
    # the same model as a vote over critiques it samples (the transformers engine): this tiny
    # model scores well teacher-forced but misspells what it writes freely, so the parse
    # refuses its critiques and the solutions get no scores rather than guessed ones
    from rwpipe.config import GenerationConfig
    from rwpipe.score import VoteScorer

    vote = VoteScorer(tmp_path / "gprm", GenerationConfig(backend="hf"), k=2, temperature=0.1,
                      max_new_tokens=200, device="cpu", seed=0)  # fmt: skip
    try:
        voted = vote.score(solutions[:2])
    finally:
        vote.close()
    stats = vote.stats()
    assert stats["solutions"] == 2 and stats["critiques_per_solution"] == 2
    assert stats["generated_tokens"] > 0
    unscored = [v for v in voted if v == (None, [])]
    assert len(unscored) == stats["unparsed_solutions"]
    assert all(len(v[1]) == 1 and 0 <= v[1][0] <= 1 for v in voted if v not in unscored)


def test_vote_over_sampled_critiques_by_hand():
    from rwpipe.critique import vote_scores

    none_wrong = format_critique([1, 1, 1])
    second_wrong = format_critique([1, 0])
    garbled = "Step 1: fine\nThe first incorrect step is \\boxed{2}."
    # steps judged correct through k: 3/3 at step 1, 2/3 at step 2 (one critique stops there)
    votes = vote_scores([none_wrong, second_wrong, none_wrong, garbled], 3)
    assert votes == pytest.approx([1.0, 2 / 3, 2 / 3])
    assert vote_scores([garbled], 3) is None
    assert vote_scores([format_critique([0])], 2) == [0.0, 0.0]


class _ScriptedJudge:
    """A judge backend that answers every request with the same samples (the filter's input)."""

    def __init__(self, samples):
        self.samples, self.asked = samples, []

    def complete(self, messages, n, temperature, max_tokens, seed):
        self.asked += messages
        return [self.samples[:n] for _ in messages]


def test_sampled_critiques_are_kept_only_where_they_agree_with_the_labels():
    from rwpipe.critique import judged_rows

    rows = _separable(1).to_pylist()  # labels [1], [0], [1, 0], [1, 1]
    agrees_with_second = (
        "Step 1: ok is fine. The step is \\boxed{correct}.\n"
        "Step 2: no is wrong. The step is \\boxed{incorrect}.\n"
        "The first incorrect step is \\boxed{2}."
    )
    judge = _ScriptedJudge([format_critique([1, 1]), "I think it is fine.", agrees_with_second])
    got, stats = judged_rows(rows, judge, k=3, temperature=0.8, max_new_tokens=64, seed=0)
    assert len(judge.asked) == 4 and "\\boxed{incorrect}" in judge.asked[0]
    # one-step solutions: no sample judges exactly one step; [1, 0] keeps the third sample,
    # [1, 1] the first
    assert [(r["sample_idx"], r["critique"]) for r in got] == [
        (2, agrees_with_second), (3, format_critique([1, 1]))
    ]  # fmt: skip
    assert got[0]["step_verdicts"] == [1, 0] and got[0]["first_error"] == 1
    assert stats["critiques_sampled"] == 12 and stats["critiques_agreeing"] == 2
    assert stats["critiques_parsed"] == 4 and stats["agreement_rate"] == round(2 / 12, 4)
    artifacts.validate(pa.Table.from_pylist(got), "critiques", "test")


def test_judge_critiques_resume_per_shard_after_a_kill(tmp_path, monkeypatch):
    """The judge source writes one shard per `shard_size` solutions: a run killed after its
    first shard resumes with the rest only and ends with an uninterrupted run's rows."""
    import rwpipe.critique as critique
    from rwpipe.config import BaseConfig, CritiquesConfig, JudgeConfig

    labels = tmp_path / "labels.arrow"
    artifacts.write_artifact(_separable(2), labels, "labels", section="annotate")
    cfg = CritiquesConfig(source="judge", shard_size=2,
                          judge=JudgeConfig(base_url="http://judge.invalid/v1", model="m", k=2,
                                            temperature=0.8))  # fmt: skip
    samples = [format_critique([1, 1]), format_critique([1, 0])]

    class Killed(Exception):
        pass

    class DiesAfterOneShard(_ScriptedJudge):
        def complete(self, messages, *args):
            if self.asked:
                raise Killed
            return super().complete(messages, *args)

    first = DiesAfterOneShard(samples)
    monkeypatch.setattr(critique, "_judge", lambda *a: first)
    with pytest.raises(Killed):
        critique.run(cfg, BaseConfig(), labels=labels, out=tmp_path / "c.arrow")
    assert not (tmp_path / "c.arrow").exists()
    again = _ScriptedJudge(samples)
    monkeypatch.setattr(critique, "_judge", lambda *a: again)
    stats = critique.run(cfg, BaseConfig(), labels=labels, out=tmp_path / "c.arrow")
    # 8 solutions labelled to their first error, in shards of 2: the resumed run asks only for
    # the three shards after the first; the two-step ones ([1, 0], [1, 1]) find an agreeing
    # sample, the one-step ones none
    assert len(first.asked) == 2 and len(again.asked) == 6 and stats["resumed_shards"] == 1
    assert (stats["shards"], stats["solutions"], stats["critiques_sampled"]) == (4, 8, 16)
    whole = _ScriptedJudge(samples)
    monkeypatch.setattr(critique, "_judge", lambda *a: whole)
    critique.run(cfg, BaseConfig(), labels=labels, out=tmp_path / "whole.arrow")
    resumed, straight = (artifacts.read_artifact(tmp_path / n, "critiques").to_pylist()
                         for n in ("c.arrow", "whole.arrow"))  # fmt: skip
    assert resumed == straight and len(resumed) == stats["rows"] == 4


def test_critiques_stage_templates_the_labels(tmp_path):
    from rwpipe.config import BaseConfig, CritiquesConfig
    from rwpipe.critique import run
    from rwpipe.errors import InputError

    labels = tmp_path / "labels.arrow"
    artifacts.write_artifact(_separable(2), labels, "labels", section="annotate")
    stats = run(CritiquesConfig(), BaseConfig(), labels=labels, out=tmp_path / "c.arrow")
    table = artifacts.read_artifact(tmp_path / "c.arrow", "critiques")
    assert stats["rows"] == table.num_rows == 8 and set(table["source"].to_pylist()) == {"template"}
    assert table["critique"].to_pylist()[2] == format_critique([1, 0])
    with pytest.raises(InputError, match="needs a judge"):
        run(CritiquesConfig(source="judge"), BaseConfig(), labels=labels, out=tmp_path / "j.arrow")
    assert not (tmp_path / "j.arrow").exists()
    # outcome-only labels: an empty artifact (the pipeline runs on), which a generative PRM
    # refuses in one line naming it
    outcome_only = _separable(1).to_pylist()
    for r in outcome_only:
        r["step_hard"] = r["step_soft"] = [None] * len(r["steps"])
    artifacts.write_artifact(pa.Table.from_pylist(outcome_only), labels, "labels",
                             section="annotate")  # fmt: skip
    stats = run(CritiquesConfig(), BaseConfig(), labels=labels, out=tmp_path / "e.arrow")
    assert stats["rows"] == artifacts.read_artifact(tmp_path / "e.arrow", "critiques").num_rows == 0
    from rwpipe.train import run as train_run

    cfg = TrainPRMConfig(kind="generative", optim=OptimConfig(max_length=256))
    with pytest.raises(InputError, match="e.arrow: no solution with step labels"):
        train_run(cfg, BaseConfig(), labels=labels, base_model=_small_lm(tmp_path / "lm"),
                  out=tmp_path / "gprm", critiques=tmp_path / "e.arrow")  # fmt: skip
    assert not (tmp_path / "gprm").exists()
