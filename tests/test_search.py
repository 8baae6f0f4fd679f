"""PRM-guided beam search on a scripted engine and a rule-based PRM (the algorithm only; the
eval stage runs it on the real model).

python -m pytest tests/test_search.py -q
"""

import math
import re

import pytest

from rwpipe.backends import Completion
from rwpipe.config import SearchConfig
from rwpipe.eval.search import beam_search
from rwpipe.runtime import stable_seed
from rwpipe.steps import StepRule
from tests.fakes import ScriptedGenerator

EOS = stable_seed("<eos>") % 49_000 + 3  # the id ScriptedGenerator gives the word "<eos>"


def _script(prompt: str, i: int, seed: int) -> str:
    """Sample 0 writes a bad step, sample 1 a good one; the third step ends the solution."""
    depth = prompt.count("step")
    word = "good" if i == 1 else "bad"
    return f"{word} step" + (" <eos>" if depth >= 2 else "")


def _prm(questions, prompts, step_lists):
    return [[1.0 if "good" in s else 0.0 for s in steps] for steps in step_lists]


def test_beam_search_follows_the_prm_and_counts_tokens():
    gen = ScriptedGenerator(_script)
    cfg = SearchConfig(beam_width=1, expansions=2, max_steps=5, aggregation="min")
    [out] = beam_search(gen, _prm, ["q"], ["<p>"], cfg, eos_token_id=EOS)
    assert out["steps"] == ["good step\n\n", "good step\n\n", "good step <eos>"]
    assert out["score"] == 1.0
    # 3 depths x 2 expansions: 2 + 2 + 3 words each
    assert out["tokens"] == 2 * 2 + 2 * 2 + 2 * 3
    assert len(gen.calls) == 3 and all(p.n == 2 and p.stop == ("\n\n",) for _, p in gen.calls)


def test_wider_beams_keep_finished_candidates_and_stop_at_max_steps():
    gen = ScriptedGenerator(lambda p, i, s: f"w{i} step")  # never ends by itself
    cfg = SearchConfig(beam_width=2, expansions=2, max_steps=2, aggregation="last")
    outs = beam_search(gen, _prm, ["q1", "q2"], ["<a>", "<b>"], cfg, eos_token_id=EOS)
    assert [len(o["steps"]) for o in outs] == [2, 2]
    # depth 1: 2 problems x 1 beam x 2; depth 2: 2 problems x 2 beams x 2
    assert len(gen.calls[0][0]) == 2 and len(gen.calls[1][0]) == 4
    assert all(o["tokens"] == (2 + 4) * 2 for o in outs)


class StoppingGenerator(ScriptedGenerator):
    """Honours stop strings and the token budget as an engine does: the text ends before the
    first stop string (finish "stop"), or after `max_new_tokens` words (finish "length")."""

    def _complete(self, prompt, i, params):
        text = self.script(prompt, i, params.seed)
        finish = "stop"
        cuts = [text.index(s) for s in params.stop if s in text]
        if cuts:
            text = text[: min(cuts)]
        words = list(re.finditer(r"\S+", text))
        if len(words) > params.max_new_tokens:
            text, finish = text[: words[params.max_new_tokens - 1].end()], "length"
        ids = tuple(stable_seed(w) % 49_000 + 3 for w in text.split())
        return Completion(text, ids, tuple(-0.5 for _ in ids), finish)


# rule, what separates the scripted steps, a step's body (4 words), stop strings
MODES = {
    "blank_line": (StepRule("blank_line"), "\n\n", "Step {k}: {w}\ncheck", ("\n\n",)),
    "line": (StepRule("line"), "\n", "Step {k}: {w} check", ("\n",)),
    # not a literal: no stop string; a line break inside a step is no boundary
    "regex": (StepRule("regex", r"\n(?=Step \d)"), "\n", "Step {k}: {w}\ncheck", ()),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_beam_search_cuts_steps_under_each_rule(mode):
    rule, sep, body, stop = MODES[mode]

    def script(prompt, i, seed):
        """The rest of a 3-step solution; sample 1 writes good steps, sample 0 bad ones."""
        done = prompt.count("Step ")
        word = "good" if i == 1 else "bad"
        rest = [body.format(k=k, w=word) for k in range(done + 1, 4)]
        return sep.join(rest) + " <eos>"

    gen = StoppingGenerator(script)
    cfg = SearchConfig(beam_width=1, expansions=2, max_steps=5, step_max_tokens=6)
    [out] = beam_search(gen, _prm, ["q"], ["<p>"], cfg, rule=rule, eos_token_id=EOS)
    want = [body.format(k=k, w="good") + sep for k in (1, 2)] + [body.format(k=3, w="good")]
    assert out["steps"] == want[:2] + [want[2] + " <eos>"]
    assert rule.split(rule.join(out["steps"])) == out["steps"]
    assert out["score"] == 1.0 and all(p.stop == stop for _, p in gen.calls)
    # with a stop string each call writes one step (4 words, 5 with <eos>); without one the
    # engine writes on to step_max_tokens (6 words), and the discarded rest still counts
    per_sample = 4 + 4 + 5 if stop else 6 + 6 + 5
    assert out["tokens"] == 2 * per_sample and len(gen.calls) == 3


def test_regex_rule_without_a_boundary_keeps_the_whole_continuation():
    """No boundary in a continuation cut at step_max_tokens: the partial step is kept and the
    next depth continues it; EOS after a cut-off first step does not end the solution."""
    rule = StepRule("regex", r"\n(?=Step \d)")
    gen = StoppingGenerator(lambda p, i, s: "Step 1: good\ncheck\nStep 2: good <eos>")
    cfg = SearchConfig(beam_width=1, expansions=1, max_steps=2, step_max_tokens=64)
    [out] = beam_search(gen, _prm, ["q"], ["<p>"], cfg, rule=rule, eos_token_id=EOS)
    # depth 1 keeps "Step 1: ...\n" (the EOS went with the rest); depth 2 the same again
    assert out["steps"] == ["Step 1: good\ncheck\n"] * 2
    gen = StoppingGenerator(lambda p, i, s: "one long step without any boundary at all")
    cfg = SearchConfig(beam_width=1, expansions=1, max_steps=3, step_max_tokens=4)
    [out] = beam_search(gen, _prm, ["q"], ["<p>"], cfg, rule=rule, eos_token_id=EOS)
    assert out["steps"] == ["one long step without"] * 3 and out["tokens"] == 12


# ---- diverse verifier tree search and particle filtering ----------------------------------------


def _counting_script():
    """Each completion is a fresh word `s<k>` (k counts up over the run), ending the solution
    at the third step; so every path differs and the PRM can rank them by k."""
    counter = iter(range(1, 10_000))

    def script(prompt: str, i: int, seed: int) -> str:
        depth = prompt.count("step")
        return f"s{next(counter)} step" + (" <eos>" if depth >= 2 else "")

    return script


def _prm_by_number(questions, prompts, step_lists):
    """Each step scores its number / 1000: later completions rank higher."""
    return [[int(re.search(r"s(\d+)", s).group(1)) / 1000 for s in steps] for steps in step_lists]


def test_dvts_keeps_its_subtrees_apart_where_beam_search_does_not():
    cfg = dict(beam_width=2, expansions=2, max_steps=5, aggregation="last")
    beam_gen, dvts_gen = (
        ScriptedGenerator(_counting_script()),
        ScriptedGenerator(_counting_script()),
    )
    beam_search(beam_gen, _prm_by_number, ["q"], ["<p>"], SearchConfig(**cfg), eos_token_id=EOS)
    [out] = beam_search(dvts_gen, _prm_by_number, ["q"], ["<p>"],
                        SearchConfig(method="dvts", **cfg), eos_token_id=EOS)  # fmt: skip
    # depth 0, both: s1 s2 for the first root, s3 s4 for the second (DVTS: one root per subtree)
    assert [len(p) for p, _ in dvts_gen.calls] == [2, 2, 2]  # one path per subtree, per depth
    # beam search keeps s1 and s2 (its single root's children), then the best two of all their
    # children, which share one parent; DVTS keeps s2 (subtree 1) and s4 (subtree 2)
    second = dvts_gen.calls[1][0]
    assert [p.split("s")[1][:1] for p in second] == ["2", "4"]
    first_steps = {p.split("step")[0] for p in beam_gen.calls[2][0]}
    assert len(beam_gen.calls[2][0]) == 2 and len(first_steps) == 1  # one line took both beams
    assert len({p.split("step")[0] for p in dvts_gen.calls[2][0]}) == 2
    # the answer is the best finished subtree; tokens: 3 depths x 2 subtrees x 2 expansions
    assert out["steps"][-1].endswith("<eos>") and out["score"] == max(out["score"], 0.0)
    assert out["tokens"] == (2 + 2 + 3) * 2 * 2


def test_dvts_with_one_subtree_is_greedy_beam_search():
    cfg = dict(beam_width=1, expansions=2, max_steps=5, aggregation="min")
    [dvts] = beam_search(ScriptedGenerator(_script), _prm, ["q"], ["<p>"],
                         SearchConfig(method="dvts", **cfg), eos_token_id=EOS)  # fmt: skip
    [beam] = beam_search(ScriptedGenerator(_script), _prm, ["q"], ["<p>"], SearchConfig(**cfg),
                         eos_token_id=EOS)  # fmt: skip
    assert dvts == beam and dvts["steps"] == ["good step\n\n", "good step\n\n", "good step <eos>"]


def test_resampling_weights_by_hand():
    from rwpipe.eval.search import resample_weights

    # probabilities: softmax of the log-odds at temperature 1 = the odds, normalised
    assert resample_weights([0.9, 0.5], "probability", 1.0) == pytest.approx([0.9, 0.1])
    assert resample_weights([0.9, 0.5], "probability", 2.0) == pytest.approx([0.75, 0.25])
    assert resample_weights([0.3, 0.3, 0.3], "probability", 1.0) == pytest.approx([1 / 3] * 3)
    # log-ratios are logits already; an unscored particle gets nothing
    got = resample_weights([0.0, math.log(3), float("-inf")], "log_ratio", 1.0)
    assert got == pytest.approx([0.25, 0.75, 0.0])
    assert resample_weights([float("-inf")] * 2, "probability", 1.0) == [0.5, 0.5]


def test_resampling_draws_in_proportion_to_the_weights():
    import random

    from rwpipe.eval.search import resample_weights

    weights = resample_weights([0.9, 0.5], "probability", 1.0)
    rng = random.Random(0)
    draws = rng.choices(range(2), weights=weights, k=20_000)
    share = draws.count(0) / len(draws)
    assert abs(share - 0.9) < 4 * math.sqrt(0.9 * 0.1 / len(draws))  # within 4 standard errors


def test_particle_filtering_keeps_the_good_particles_and_counts_tokens():
    flips = iter(range(10_000))

    def script(prompt, i, seed):  # alternately a good and a bad step; the third one ends it
        word = "good" if next(flips) % 2 == 0 else "bad"
        return f"{word} step" + (" <eos>" if prompt.count("step") >= 2 else "")

    gen = ScriptedGenerator(script)
    cfg = SearchConfig(method="particles", beam_width=4, max_steps=5, aggregation="min")
    [out] = beam_search(gen, _prm, ["q"], ["<p>"], cfg, eos_token_id=EOS)
    assert out["steps"] == ["good step\n\n", "good step\n\n", "good step <eos>"]
    assert out["score"] == 1.0
    assert all(p.n == 1 for _, p in gen.calls) and [len(p) for p, _ in gen.calls] == [4, 4, 4]
    assert out["tokens"] == 4 * (2 + 2 + 3)  # every particle's every step, resampled or not
    # half the particles score 1, half 0 after each step: the weights put ~all mass on the
    # good half, so the effective sample size is 2 of 4 (then the survivors are all good: 4)
    assert out["ess"][0] == pytest.approx(2.0, abs=1e-3)
    assert len(out["ess"]) == 3


def test_evaluate_search_reports_particle_filtering_against_best_of_n():
    from rwpipe.eval.search import evaluate_search

    class Scorer:  # the scripted PRM behind rwpipe.score.Scorer's interface
        kind = "prm"

        def score(self, solutions, batch_size, advance=None):
            got = _prm(None, None, [s.steps for s in solutions])
            return [(steps[-1] if steps else None, steps) for steps in got]

    rows = [{"problem_id": f"p{k}", "sample_idx": i, "question": f"q{k}", "prompt": f"<p{k}>",
             "gold": "7", "pred": "7" if i else "3", "verdict": "correct" if i else "incorrect",
             "num_tokens": 5} for k in range(2) for i in range(4)]  # fmt: skip
    prm_scores = {(r["problem_id"], r["sample_idx"]): (float(r["sample_idx"] > 0), [1.0])
                  for r in rows}  # fmt: skip

    def script(prompt, i, seed):  # a good step, then the answer
        return "good step" if "step" not in prompt else "good step so 7 <eos>"

    cfg = SearchConfig(problems=2, method="particles", beam_width=3, max_steps=4,
                       aggregation="min")  # fmt: skip
    gen = ScriptedGenerator(script)
    gen.tokenizer = type("Tokenizer", (), {"eos_token_id": EOS})()  # what evaluate_search reads
    got = evaluate_search(rows, gen, Scorer(), prm_scores, cfg, seed=0, rule=StepRule())
    assert got["problems"] == 2 and got["accuracy"] == 1.0
    assert got["tokens_per_problem"] == 3 * (2 + 5)  # 3 particles, two steps of 2 and 5 words
    assert got["ess_mean"] == pytest.approx(3.0)  # equal scores: uniform weights
    assert got["config"].startswith("particle filtering, 3 particles")


def test_searches_in_lockstep_equal_each_search_alone():
    """search_together batches every search's paths into shared engine calls; with an engine
    whose sample depends only on (prompt, index, seed), each search's records (solution,
    score, tokens, ESS) are exactly those it finds alone, in fewer engine calls."""
    from rwpipe.eval.search import search_together

    def script(prompt, i, seed):
        word = "good" if stable_seed(prompt, i, seed) % 3 else "bad"
        return f"{word} step" + (" <eos>" if prompt.count("step") >= 2 else "")

    cfgs = [SearchConfig(method=m, beam_width=w, expansions=2, max_steps=4, aggregation="mean")
            for m, w in (("beam", 2), ("dvts", 2), ("particles", 3))]  # fmt: skip
    qs, ps = ["q1", "q2"], ["<a>", "<b>"]
    together = ScriptedGenerator(script)
    got = search_together(together, _prm, qs, ps, cfgs, seed=5, eos_token_id=EOS)
    alone = [ScriptedGenerator(script) for _ in cfgs]
    want = [
        beam_search(g, _prm, qs, ps, c, seed=5, eos_token_id=EOS)
        for g, c in zip(alone, cfgs, strict=True)
    ]
    assert got == want
    assert len(together.calls) < sum(len(g.calls) for g in alone)
