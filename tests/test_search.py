"""PRM-guided beam search on a scripted engine and a rule-based PRM (the algorithm only; the
eval stage runs it on the real model).

python -m pytest tests/test_search.py -q
"""

from rwpipe.config import SearchConfig
from rwpipe.eval.search import beam_search
from rwpipe.runtime import stable_seed
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
