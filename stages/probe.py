"""`rwpipe probe`: the master-key robustness probe ("One Token to Fool LLM-as-a-Judge") of an
LLM judge and of the rule verifier, on the eval problems.

rwpipe probe data/problems.arrow data/models/smollm2-135m-instruct data/probe.json
"""

from pathlib import Path
from typing import Annotated

import typer

from rwpipe import artifacts
from rwpipe.config import AnnotateConfig, BaseConfig, load_section
from rwpipe.errors import InputError
from stages.options import DEFAULT_PARAMS, InFile, ParamsOpt
from stages.report import console

JudgeModel = Annotated[
    Path,
    typer.Argument(help="Judge model directory (ignored when annotate.judge.base_url is set).",
                   show_default=False),
]  # fmt: skip
OutJson = Annotated[Path, typer.Argument(help="Where the rates go (.json).", show_default=False)]


def probe(
    problems: InFile, judge_model: JudgeModel, out: OutJson, *,
    max_problems: Annotated[int, typer.Option(min=1, help="Eval problems probed.")] = 32,
    params: ParamsOpt = DEFAULT_PARAMS,
) -> None:  # fmt: skip
    """False-positive rate per master key ("", ":", "Solution", ...) of the judge in
    `annotate.judge` (verdict mode, with the reference answer) and of the rule verifier."""
    base = load_section(params, "base", BaseConfig)
    cfg = load_section(params, "annotate", AnnotateConfig)
    table = artifacts.read_artifact(problems, "problems")
    rows = [r for r in table.to_pylist() if r["split"] == "eval"][:max_problems]
    if not rows:
        raise InputError(f"{problems}: no eval problems to probe")
    j = cfg.judge
    if not j.base_url and not (judge_model / "config.json").is_file():
        raise InputError(f"{judge_model}: not a model directory (no config.json)")
    from rich.table import Table

    from rwpipe.backends import load_engine
    from rwpipe.judge import LocalJudge, OpenAIJudge, judge_outcomes
    from rwpipe.probe import MASTER_KEYS, false_positive_rates, probe_rates
    from rwpipe.verify import VerifierPool

    pairs = [(r["question"], r["answer"]) for r in rows]
    generator = None
    if j.base_url:
        backend = OpenAIJudge.from_config(j)
    else:
        generator = load_engine(judge_model, cfg.engine, device=base.device, seed=base.seed)
        backend = LocalJudge(generator)  # fmt: skip

    def llm_judge(questions, golds, responses):
        got = judge_outcomes(backend, list(zip(questions, responses, golds, strict=True)),
                             k=j.k, temperature=j.temperature, max_tokens=j.max_new_tokens,
                             seed=base.seed,
                             sentence=j.verdict_parse == "boxed_or_sentence")  # fmt: skip
        # the first problem's replies, one per key, kept to show what the judge wrote
        examples.update(
            zip(MASTER_KEYS, (g.raw[:300] for g in got[: len(MASTER_KEYS)]), strict=True)
        )
        return [None if g.value is None else g.value == "correct" for g in got]

    examples: dict[str, str] = {}

    try:
        judge_probe = probe_rates(pairs, llm_judge)
    finally:
        if generator is not None:
            generator.close()
    with VerifierPool() as pool:
        rule_rates = false_positive_rates(
            pairs, lambda q, g, r: [v.verdict == "correct" for v in pool.check(g, r)]
        )
    judge_rates = {k: v["false_positive"] for k, v in judge_probe.items()}
    abstained = {k: v["abstained"] for k, v in judge_probe.items()}
    result = {
        "problems": len(pairs),
        "judge": j.base_url or str(judge_model),
        "verdict_parse": j.verdict_parse,
        "max_new_tokens": j.max_new_tokens,
        "judge_false_positive": judge_rates,
        "judge_abstained": abstained,
        "rule_false_positive": rule_rates,
        "judge_mean": sum(judge_rates.values()) / len(judge_rates),
        "rule_mean": sum(rule_rates.values()) / len(rule_rates),
        "judge_abstained_mean": sum(abstained.values()) / len(abstained),
        "judge_examples": examples,
    }
    artifacts.write_json(result, out)
    view = Table(title=f"master-key false positives over {len(pairs)} problems -> {out}")
    for col in ("key", "response", "LLM judge FP", "judge abstained", "rule verifier FP"):
        view.add_column(col)
    for key, text in MASTER_KEYS.items():
        view.add_row(key, repr(text)[:30], f"{judge_rates[key]:.3f}", f"{abstained[key]:.3f}",
                     f"{rule_rates[key]:.3f}")  # fmt: skip
    console.print(view)
