"""PRM-guided beam search on a scripted engine and a rule-based PRM (the algorithm only; the
eval stage runs it on the real model).

python -m pytest tests/test_search.py -q
"""

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
