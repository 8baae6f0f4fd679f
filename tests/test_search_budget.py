"""Test-time scaling on one budget axis (rwpipe.eval.budget, stage `search`): every method on a
scripted engine and a scripted PRM with known answers and exact token counts, the resampling
statistics, the budget points and the compute-optimal table by hand, resume after a kill, and
bad input at the command line.

python -m pytest tests/test_search_budget.py -q
"""

import json

import pyarrow as pa
import pytest

from rwpipe import artifacts
from rwpipe.backends import Completion
from rwpipe.config import BaseConfig, SearchConfig, SearchStageConfig
from rwpipe.errors import InputError
from rwpipe.eval import budget, budget_report
from rwpipe.eval.budget import Problem, budget_points, compute_optimal, search_shard
from rwpipe.eval.curves import pooled_ci
from rwpipe.eval.search import beam_search
from rwpipe.runtime import stable_seed
from rwpipe.schemas import SPECS
from rwpipe.steps import StepRule
from tests.conftest import run_rwpipe
from tests.fakes import ScriptedGenerator
from tests.test_search import EOS

TREES = ("beam", "dvts", "particles")


class Alternating(ScriptedGenerator):
    """Within each generate call, each problem's completions alternate good, bad, good, ...
    (in batch order, whatever came before; a problem is its prompt up to the first ">"). The
    third step of a solution ends it with an answer: 7 after a good step (right), 3 after a
    bad one."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__(lambda p, i, s: "")
        self.fail_after = fail_after  # raise on this call (a killed run)

    def generate(self, prompts, params, progress=None):
        if self.fail_after is not None and len(self.calls) == self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls.append((list(prompts), params))
        seen: dict[str, int] = {}
        out = []
        for prompt in prompts:
            row = []
            for _ in range(params.n):
                j = seen[prompt.split(">")[0]] = seen.get(prompt.split(">")[0], -1) + 1
                word, answer = ("good", "7") if j % 2 == 0 else ("bad", "3")
                end = prompt.count("step") >= 2  # two steps written: this one is the last
                text = f"{word} step" + (f" \\boxed{{{answer}}} <eos>" if end else "")
                ids = tuple(stable_seed(w) % 49_000 + 3 for w in text.split())
                row.append(Completion(text, ids, tuple(-0.5 for _ in ids), "stop"))
            out.append(row)
        return out


def _prm(good: float = 1.0, bad: float = 0.0):
    def score(questions, prompts, step_lists):
        return [[good if "good" in s else bad for s in steps] for steps in step_lists]

    return score


def _problem(pid: str, level: int | None, samples: list[tuple[str, bool, int, str]]) -> Problem:
    """samples: (pred, correct, num_tokens, step word) per rollout, in sample_idx order."""
    rows = [{"problem_id": pid, "sample_idx": i, "question": f"q {pid}", "prompt": f"<p {pid}>",
             "steps": [f"{word} step\n\n", f"{word}: so {pred}"], "pred": pred,
             "num_tokens": tokens, "verdict": "correct" if ok else "incorrect"}
            for i, (pred, ok, tokens, word) in enumerate(samples)]  # fmt: skip
    return Problem(pid, level, f"q {pid}", f"<p {pid}>", "7", rows)


# ---- every method finds the answer and counts its tokens ---------------------------------------


def test_every_tree_method_finds_the_good_path_and_counts_only_new_tokens():
    problems = [_problem("a", 1, []), _problem("b", 2, [])]
    cfg = SearchStageConfig(budgets=(1, 2), methods=TREES, aggregation="min", max_steps=5)
    gen = Alternating()
    rows = search_shard(problems, gen, _prm(), cfg, kind="probability", seed=0,
                        rule=StepRule(), eos_token_id=EOS)  # fmt: skip
    got = {(r["problem_id"], r["method"], r["budget"]): r for r in rows}
    assert len(rows) == 2 * 3 * 2 and all(r["correct"] == 1.0 for r in rows)
    # words per completion: 2 ("good step") at depths 0 and 1, 4 at depth 2 (+ answer, <eos>);
    # the prompt and the re-sent steps are never counted
    # beam N=1: 2 children per depth: 2*2 + 2*2 + 2*4; N=2: 1 root x 2, then 2 beams x 2
    # dvts N: N subtrees x 2 children per depth; particles N: N particles x 1 child per depth
    want = {("beam", 1): 16, ("beam", 2): 2 * 2 + 4 * 2 + 4 * 4, ("dvts", 1): 16,
            ("dvts", 2): 4 * 2 + 4 * 2 + 4 * 4, ("particles", 1): 8,
            ("particles", 2): 16}  # fmt: skip
    for pid in "ab":
        for (method, n), tokens in want.items():
            assert got[(pid, method, n)]["tokens"] == tokens, (pid, method, n)
    assert [r["level"] for r in rows if r["problem_id"] == "b"] == [2] * 6
    # lockstep: one engine call per depth for the trees (2 children per path) and one for the
    # particles (1 each), over every method and budget: depth 0 sends beam 1 + 1 roots and
    # dvts 1 + 2 subtrees (5 per problem), then particles 1 + 2
    assert [len(ps) for ps, _ in gen.calls[:2]] == [10, 6] and len(gen.calls) == 6
    assert [params.n for _, params in gen.calls] == [2, 1] * 3
    # the last depth's prompts carry both earlier steps (4 words of prefix, not counted)
    assert all(p.count("step") == 2 for ps, _ in gen.calls[4:] for p in ps)
    # records are in problem, method, budget order; ESS only for particles
    assert [(r["method"], r["budget"]) for r in rows[:6]] == [(m, n) for m in TREES for n in (1, 2)]
    assert all((r["ess_mean"] is None) == (r["method"] != "particles") for r in rows)


def test_best_of_n_and_weighted_vote_on_the_pool_by_hand():
    # a: only sample 1 is right (7, scored 0.9); the three wrong ones agree on 3 (0.4 each)
    a = _problem("a", 1, [("3", False, 10, "bad"), ("7", True, 20, "good"),
                          ("3", False, 30, "bad"), ("3", False, 40, "bad")])  # fmt: skip
    cfg = SearchStageConfig(budgets=(2, 4), methods=("best_of_n", "weighted_vote"))
    rows = search_shard([a], None, _prm(0.9, 0.4), cfg, kind="probability", seed=0,
                        rule=StepRule())  # fmt: skip
    got = {(r["method"], r["budget"]): (r["correct"], r["tokens"]) for r in rows}
    # N=2: samples 0, 1 (10 + 20 tokens): best-of-N picks 7; the vote 7 (0.9) against 3 (0.4)
    # N=4: best-of-N still picks 7; the vote 3 (3 x 0.4 = 1.2) beats 7 (0.9): wrong
    assert got == {("best_of_n", 2): (1.0, 30), ("weighted_vote", 2): (1.0, 30),
                   ("best_of_n", 4): (1.0, 100), ("weighted_vote", 4): (0.0, 100)}  # fmt: skip


def test_majority_needs_no_reward_model_and_is_pass1_at_one_sample():
    # the same pool: at N = 1 the vote is sample 0 (wrong); at N = 2, 3 and 7 tie (half the
    # credit); at N = 4 the three wrong 3s win
    a = _problem("a", 1, [("3", False, 10, "bad"), ("7", True, 20, "good"),
                          ("3", False, 30, "bad"), ("3", False, 40, "bad")])  # fmt: skip

    def no_prm(*_):
        raise AssertionError("the majority vote asked the PRM")

    cfg = SearchStageConfig(budgets=(1, 2, 4), methods=("majority",))
    rows = search_shard([a], None, no_prm, cfg, kind="probability", seed=0, rule=StepRule())
    assert [(r["budget"], r["correct"], r["tokens"]) for r in rows] == [
        (1, 0.0, 10), (2, 0.5, 30), (4, 0.0, 100)]  # fmt: skip


def test_best_of_n_ties_share_the_credit():
    a = _problem("a", 1, [("3", False, 5, "good"), ("7", True, 5, "good")])
    cfg = SearchStageConfig(budgets=(2,), methods=("best_of_n",))
    [row] = search_shard([a], None, _prm(), cfg, kind="probability", seed=0, rule=StepRule())
    assert row["correct"] == 0.5 and row["tokens"] == 10


# ---- resampling statistics by hand -------------------------------------------------------------


def test_particle_ess_and_softmax_weights_by_hand():
    """Two particles, one good (0.9) and one bad (0.5) after every step (the alternating engine
    extends each particle by one step, `last` scores the newest): at temperature 2 the weights
    are softmax(log-odds / 2) = softmax(ln 9 / 2, 0) = (3, 1) / 4, so ESS = 1 / (9/16 + 1/16)."""
    from rwpipe.eval.search import resample_weights

    assert resample_weights([0.9, 0.5], "probability", 2.0) == pytest.approx([0.75, 0.25])
    cfg = SearchConfig(method="particles", beam_width=2, max_steps=5, aggregation="last",
                       resample_temperature=2.0)  # fmt: skip
    [out] = beam_search(Alternating(), _prm(0.9, 0.5), ["q"], ["<p>"], cfg, eos_token_id=EOS)
    assert out["ess"] == pytest.approx([1 / (0.75**2 + 0.25**2)] * 3)  # 1.6 at each of 3 depths
    assert out["tokens"] == 2 * (2 + 2 + 4)


# ---- budget points and the compute-optimal table by hand ---------------------------------------


def _rec(pid, level, method, n, tokens, correct):
    return {"problem_id": pid, "level": level, "method": method, "budget": n, "tokens": tokens,
            "correct": correct, "ess_mean": None}  # fmt: skip


RECORDS = [
    # level 1 (problems a, b): beam and best-of-N both right on both; beam spends less
    _rec("a", 1, "best_of_n", 2, 100, 1.0), _rec("b", 1, "best_of_n", 2, 80, 1.0),
    _rec("a", 1, "beam", 2, 60, 1.0), _rec("b", 1, "beam", 2, 40, 1.0),
    # level 2 (problems c, d): best-of-N right on one, beam on none
    _rec("c", 2, "best_of_n", 2, 120, 1.0), _rec("d", 2, "best_of_n", 2, 100, 0.0),
    _rec("c", 2, "beam", 2, 50, 0.0), _rec("d", 2, "beam", 2, 70, 0.0),
    # a problem without a level
    _rec("e", None, "best_of_n", 2, 10, 0.0), _rec("e", None, "beam", 2, 10, 1.0),
]  # fmt: skip


def test_methods_against_the_majority_vote_paired_by_hand():
    from rwpipe.eval.budget import versus_majority

    maj = [_rec(p, 1, "majority", 2, 10, c) for p, c in zip("abc", (1.0, 0.0, 0.0), strict=True)]
    bon = [_rec(p, 1, "best_of_n", 2, 10, c) for p, c in zip("abc", (1.0, 1.0, 0.0), strict=True)]
    beam = [_rec(p, 1, "beam", 2, 30, c) for p, c in zip("abc", (1.0, 1.0, 1.0), strict=True)]
    lone = [_rec("d", 1, "dvts", 4, 50, 1.0)]  # no majority at N = 4: no comparison
    one = [_rec(p, 1, m, 1, 5, 1.0) for p in "abc" for m in ("majority", "best_of_n", "beam")]
    rows = {(r["method"], r["budget"]): r for r in versus_majority(maj + bon + beam + lone + one)}
    # at N = 1 a pool method is the vote itself: only the search is compared
    assert set(rows) == {("best_of_n", 2), ("beam", 2), ("beam", 1)}
    # best-of-N: differences 0, 1, 0: mean 1/3, standard error sd / sqrt(3) = 1/3
    b = rows[("best_of_n", 2)]
    assert b["estimate"] == pytest.approx(1 / 3) and b["n"] == 3 and b["tokens_ratio"] == 1.0
    assert (
        b["ci95_lo"] == pytest.approx(1 / 3 - 1.96 / 3) and b["verdict"] == "not shown at this size"
    )
    # beam: differences 0, 1, 1: mean 2/3, sd 1/sqrt(3), se 1/3; three times the tokens
    e = rows[("beam", 2)]
    assert e["estimate"] == pytest.approx(2 / 3) and e["tokens_ratio"] == 3.0
    assert e["ci95_lo"] == pytest.approx(2 / 3 - 1.96 / 3) and e["ci95_lo"] > 0
    assert e["verdict"] == "shown"
    assert versus_majority(bon + beam) == []


def test_budget_points_by_hand():
    points = {p["method"]: p for p in budget_points(RECORDS)}
    bon, beam = points["best_of_n"], points["beam"]
    assert bon["problems"] == 5 and bon["accuracy"] == pytest.approx(3 / 5)
    assert bon["tokens_per_problem"] == pytest.approx((100 + 80 + 120 + 100 + 10) / 5)
    assert beam["accuracy"] == pytest.approx(3 / 5) and beam["tokens_per_problem"] == 46
    # the interval is the project's problem-level bootstrap of that accuracy
    assert (bon["ci95_lo"], bon["ci95_hi"]) == pooled_ci([1, 1, 1, 0, 0], [1] * 5, seed=0)
    assert 0 <= bon["ci95_lo"] <= 0.6 <= bon["ci95_hi"] <= 1
    assert list(points) == ["best_of_n", "beam"]  # method order of the schema


def test_compute_optimal_table_by_hand():
    table = {(r["level"], r["budget"]): r for r in compute_optimal(RECORDS)}
    assert list(table) == [(1, 2), (2, 2), ("unknown", 2), ("all", 2)]
    # level 1: both 1.0, beam spends 50 tokens against 90: the tie goes to beam
    assert table[(1, 2)]["method"] == "beam" and table[(1, 2)]["tokens_per_problem"] == 50
    assert table[(1, 2)]["accuracy"] == 1.0 and table[(1, 2)]["ci95_lo"] == 1.0
    # level 2: best-of-N 0.5 against beam 0.0
    assert table[(2, 2)]["method"] == "best_of_n" and table[(2, 2)]["accuracy"] == 0.5
    assert table[(2, 2)]["problems"] == 2
    assert table[("unknown", 2)]["method"] == "beam"
    # all: 3/5 each; beam spends 46 tokens a problem against 82
    assert table[("all", 2)]["method"] == "beam" and table[("all", 2)]["problems"] == 5


def test_summary_nests_points_and_table_for_dvc_metrics():
    cfg = SearchStageConfig(budgets=(2,), methods=("best_of_n", "beam"))
    got = budget.summarize(RECORDS, cfg)
    assert got["problems"] == 5 and got["points"]["beam"]["2"]["accuracy"] == pytest.approx(0.6)
    assert got["compute_optimal"]["1"]["2"]["method"] == "beam"
    assert "bootstrap" in got["ci_method"]
    lines = "\n".join(budget_report.markdown(got))
    assert "| beam | 0.600 [" in lines and "| 2 | best_of_n: 0.500" in lines
    assert got["versus_majority"] == {} and "Against the majority" not in lines  # none ran
    voted = RECORDS + [_rec(r["problem_id"], r["level"], "majority", 2, 5, 0.0)
                       for r in RECORDS if r["method"] == "beam"]  # fmt: skip
    lines = "\n".join(budget_report.markdown(budget.summarize(voted, cfg)))
    assert "| beam | 2 | +0.600 [" in lines and "| 5 |" in lines


# ---- the stage: outputs, resume after a kill, bad input ---------------------------------------


def _inputs(tmp_path, pids=("a", "b", "c"), n=4, drop: str | None = None):
    """problems.arrow (levels 1, 2, 1, ...), rollouts.arrow (n samples each: sample 1 right),
    a policy directory and a PRM directory (an rwpipe card, no weights)."""
    problems = [{"problem_id": p, "split": "eval", "source": "synthetic", "question": f"q {p}",
                 "answer": "7", "solution": None, "category": "add", "level": 1 + k % 2}
                for k, p in enumerate(pids)]  # fmt: skip
    artifacts.write_artifact(pa.Table.from_pylist(problems, schema=SPECS["problems"].schema),
                             tmp_path / "problems.arrow", "problems")  # fmt: skip
    rows = [{"problem_id": p, "sample_idx": i, "split": "eval", "question": f"q {p}",
             "prompt": f"<p {p}>", "completion": "x", "token_ids": [1] * 5,
             "logprobs": [-0.5] * 5, "finish_reason": "stop", "num_tokens": 5,
             "steps": [("good" if i == 1 else "bad") + " step"], "pred": "7" if i == 1 else "3",
             "gold": "7", "verdict": "correct" if i == 1 else "incorrect", "seed": 0}
            for p in pids for i in range(n)]  # fmt: skip
    table = pa.Table.from_pylist(rows, schema=SPECS["rollouts"].schema)
    if drop:
        path = tmp_path / "rollouts.arrow"  # a foreign file: written past the checks
        artifacts.write_artifact(table, path, "rollouts")
        raw = artifacts.read_artifact(path, "rollouts")
        with (
            pa.OSFile(str(path), "wb") as sink,
            pa.ipc.new_file(sink, raw.drop([drop]).schema) as w,
        ):
            w.write_table(raw.drop([drop]))
    else:
        artifacts.write_artifact(table, tmp_path / "rollouts.arrow", "rollouts")
    for name, card in (("policy", None), ("prm", {"kind": "prm"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        if card:
            (tmp_path / name / "rwpipe-model.json").write_text(json.dumps(card))
    return {k: tmp_path / f for k, f in (("problems", "problems.arrow"),
                                         ("rollouts", "rollouts.arrow"), ("policy", "policy"),
                                         ("prm", "prm"))}  # fmt: skip


class _Scorer:
    kind = "prm"

    def __init__(self):
        self.calls = 0

    def score(self, solutions, batch_size, advance=None):
        self.calls += 1
        got = _prm(0.9, 0.2)(None, None, [s.steps for s in solutions])
        return [(s[-1] if s else None, s) for s in got]


def _patch(monkeypatch, gen, scorer=None):
    gen.tokenizer = type("Tokenizer", (), {"eos_token_id": EOS})()
    monkeypatch.setattr(budget, "_load_policy", lambda *a: gen)
    monkeypatch.setattr(budget, "_load_scorer", lambda *a: scorer or _Scorer())


CFG = SearchStageConfig(problems=3, budgets=(1, 2), shard_size=2, aggregation="min", max_steps=5)


def test_stage_writes_records_metrics_and_curve(tmp_path, monkeypatch):
    paths = _inputs(tmp_path)
    _patch(monkeypatch, Alternating())
    out = tmp_path / "search"
    stats = budget.run(CFG, BaseConfig(), out=out, **paths)
    assert stats["problems"] == 3 and stats["shards"] == 2 and stats["resumed_shards"] == 0
    records = artifacts.read_artifact(out / "records.arrow", "search_records").to_pylist()
    assert len(records) == 3 * 6 * 2 and {r["level"] for r in records} == {1, 2}
    # sample 0 of every pool is wrong, sample 1 right (scored 0.9 against 0.2): the PRM's pool
    # methods miss at N=1 and hit at N=2, the plain vote ties 3 and 7 at N=2 (half the credit);
    # every search finds 7
    for r in records:
        want = {"majority": 0.5 * (r["budget"] == 2), "best_of_n": float(r["budget"] == 2)}
        want["weighted_vote"] = want["best_of_n"]
        assert r["correct"] == want.get(r["method"], 1.0), r
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["points"]["best_of_n"]["2"]["tokens_per_problem"] == 10  # 2 rollouts x 5
    assert metrics["points"]["particles"]["1"]["tokens_per_problem"] == 8
    # against the plain vote: +0.5 on every problem at N=2 (its tie), +1 for a search at N=1
    assert metrics["versus_majority"]["best_of_n"]["2"]["estimate"] == 0.5
    assert metrics["versus_majority"]["beam"]["1"]["verdict"] == "shown"
    assert set(metrics["compute_optimal"]) == {"1", "2", "all"}
    # N=1: the searches are right, particles cheapest (8 tokens); N=2: best-of-2 (10 tokens)
    assert metrics["compute_optimal"]["all"]["1"]["method"] == "particles"
    assert metrics["compute_optimal"]["2"]["2"]["method"] == "best_of_n"
    curve = json.loads((out / "curve.json").read_text())
    assert len(curve) == 6 * 2 and {"method", "budget", "tokens_per_problem"} <= set(curve[0])
    assert (out / "curve.png").stat().st_size > 0
    assert not (out / "records.arrow.parts").exists() and not (tmp_path / "search.partial").exists()


def test_killed_run_resumes_without_redoing_finished_problems(tmp_path, monkeypatch):
    paths = _inputs(tmp_path)
    out = tmp_path / "search"
    # shard 0 (a, b): 6 tree searches in lockstep, 3 depths of 2 calls (trees, particles) = 6
    # calls; die in shard 1's first
    _patch(monkeypatch, Alternating(fail_after=6))
    with pytest.raises(KeyboardInterrupt):
        budget.run(CFG, BaseConfig(), out=out, **paths)
    assert not out.exists()  # the killed run built in search.partial, never a half `out`
    assert (tmp_path / "search.partial" / "records.arrow.parts").is_dir()
    gen, scorer = Alternating(), _Scorer()
    _patch(monkeypatch, gen, scorer)
    stats = budget.run(CFG, BaseConfig(), out=out, **paths)
    assert stats["resumed_shards"] == 1
    # only problem c was searched again: every prompt sent is c's
    assert len(gen.calls) == 6 and all(p.startswith("<p c>") for ps, _ in gen.calls for p in ps)
    resumed = artifacts.read_artifact(out / "records.arrow", "search_records")
    _patch(monkeypatch, Alternating())
    budget.run(CFG, BaseConfig(), out=tmp_path / "fresh", **paths)
    fresh = artifacts.read_artifact(tmp_path / "fresh" / "records.arrow", "search_records")
    assert resumed.replace_schema_metadata(None).equals(fresh.replace_schema_metadata(None))


def test_problems_zero_writes_empty_outputs_without_reading_inputs(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "_load_scorer", lambda *a: pytest.fail("loaded a model"))
    out = tmp_path / "search"
    missing = tmp_path / "nowhere"
    cfg = SearchStageConfig(problems=0)
    stats = budget.run(cfg, BaseConfig(), problems=missing, rollouts=missing, policy=missing,
                       prm=missing, out=out)  # fmt: skip
    assert stats["problems"] == 0
    assert artifacts.read_artifact(out / "records.arrow", "search_records").num_rows == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["problems"] == 0 and metrics["points"] == {}
    assert budget_report.markdown(metrics) == []
    assert json.loads((out / "curve.json").read_text()) == []


def test_eval_report_reads_the_search_metrics(tmp_path):
    from rwpipe.errors import InputError

    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(budget.summarize(RECORDS, SearchStageConfig())))
    assert budget_report.read_metrics(path)["problems"] == 5
    path.write_text("{}")
    with pytest.raises(InputError, match="metrics.json: not a search stage"):
        budget_report.read_metrics(path)


def test_cli_passes_the_search_section_to_the_core(tmp_path, write_params, monkeypatch):
    from typer.testing import CliRunner

    from stages.cli import app

    seen = {}
    monkeypatch.setattr(budget, "run", lambda cfg, base, **paths: seen.update(cfg=cfg, **paths)
                        or {"problems": 0})  # fmt: skip
    params = write_params({"search": {"problems": 3, "budgets": [1, 8]}})
    args = ["search", "p.arrow", "r.arrow", "pol", "prm", str(tmp_path / "out"), "-p", str(params)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen["cfg"].problems == 3 and seen["cfg"].budgets == (1, 8)
    assert str(seen["rollouts"]) == "r.arrow" and str(seen["prm"]) == "prm"


def _fails(tmp_path, paths, params_path, out) -> str:
    result = run_rwpipe("search", paths["problems"], paths["rollouts"], paths["policy"],
                        paths["prm"], out, "--params", params_path, check=False)  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert not out.exists()  # nothing half-written
    return lines[0]


@pytest.mark.parametrize(
    "case, want",
    [
        ("missing column", "rollouts.arrow: missing column(s) num_tokens"),
        ("empty split", "rollouts.arrow: no rollouts in split train"),
        ("small pool", "rollouts.arrow: problem a has 1 rollouts, best-of-N at budget 2"),
        ("unknown method", "search.methods[1]: 'mcts' is not one of"),
    ],
)
def test_bad_input_is_one_line_exit_1(tmp_path, write_params, case, want):
    search = {"problems": 2, "budgets": [2]}
    if case == "missing column":
        paths = _inputs(tmp_path, drop="num_tokens")
    elif case == "empty split":
        paths, search["split"] = _inputs(tmp_path), "train"
    elif case == "small pool":
        paths = _inputs(tmp_path, n=1)
    else:
        paths, search["methods"] = _inputs(tmp_path), ["beam", "mcts"]
    message = _fails(tmp_path, paths, write_params({"search": search}), tmp_path / "out")
    assert want in message


def test_eval_stage_reports_the_search_stage(tmp_path, monkeypatch):
    from rwpipe.config import EvalConfig
    from rwpipe.eval import run

    paths = _inputs(tmp_path)
    _patch(monkeypatch, Alternating())
    budget.run(CFG, BaseConfig(), out=tmp_path / "search", **paths)
    metrics = run(EvalConfig(), BaseConfig(), rollouts=paths["rollouts"], out=tmp_path / "eval",
                  search_budget=tmp_path / "search" / "metrics.json")  # fmt: skip
    assert metrics["search_budget"]["compute_optimal"]["all"]["1"]["method"] == "particles"
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "## Test-time scaling" in report
    assert "| particles | 1.000 [1.000, 1.000], 8 tok" in report


def test_problems_are_taken_in_turn_from_each_level():
    from rwpipe.eval.budget import spread_over_levels

    levels = {"a": 1, "b": 1, "c": 1, "d": 2, "e": 3, "f": 3, "g": None}
    pids = sorted(levels)
    assert spread_over_levels(pids, levels, 4) == ["a", "d", "e", "g"]
    assert spread_over_levels(pids, levels, 6) == ["a", "b", "d", "e", "f", "g"]
    assert spread_over_levels(pids, levels, 99) == pids
    assert spread_over_levels(pids, levels, 0) == []


def test_an_aggregation_the_prm_cannot_take_is_refused_leaving_nothing(tmp_path, monkeypatch):
    # an implicit PRM's log-ratio step scores have no product; the refusal comes once the PRM
    # is loaded (its kind is in its card), and nothing of the run stays behind
    paths = _inputs(tmp_path)
    scorer = _Scorer()
    scorer.kind = "implicit_prm"
    _patch(monkeypatch, Alternating(), scorer)
    cfg = SearchStageConfig(problems=3, budgets=(1, 2), aggregation="prod")
    with pytest.raises(InputError, match="search.aggregation prod"):
        budget.run(cfg, BaseConfig(), out=tmp_path / "search", **paths)
    assert not (tmp_path / "search").exists() and not (tmp_path / "search.partial").exists()


class _Voter(_Scorer):
    """A generative PRM scored by a vote over sampled critiques: 3 critique tokens a solution."""

    kind = "generative_prm"

    def __init__(self):
        super().__init__()
        self.tokens, self.closed = 0, False

    def score(self, solutions, batch_size, advance=None):
        self.tokens += 3 * len(solutions)
        return super().score(solutions, batch_size, advance)

    def stats(self):
        return {"generated_tokens": self.tokens}

    def close(self):
        self.closed = True


@pytest.mark.parametrize("votes", [0, 2])
def test_a_generative_prm_votes_over_critiques_only_when_asked(tmp_path, monkeypatch, votes):
    paths = _inputs(tmp_path)
    teacher_forced, voter = _Scorer(), _Voter()
    teacher_forced.kind = "generative_prm"
    _patch(monkeypatch, Alternating(), teacher_forced)
    monkeypatch.setattr(budget, "_load_voter", lambda *a: voter)
    cfg = SearchStageConfig(problems=3, budgets=(1, 2), shard_size=2, aggregation="min",
                            max_steps=5, critique_votes=votes)  # fmt: skip
    stats = budget.run(cfg, BaseConfig(), out=tmp_path / "search", **paths)
    metrics = json.loads((tmp_path / "search" / "metrics.json").read_text())
    used = voter if votes else teacher_forced
    assert used.calls > 0 and (teacher_forced if votes else voter).calls == 0
    if votes:  # every critique token counted once, apart from the policy's tokens
        assert voter.closed and stats["verifier_tokens"] == voter.tokens > 0
        assert metrics["verifier_tokens"] == voter.tokens
    else:
        assert "verifier_tokens" not in stats and "verifier_tokens" not in metrics
