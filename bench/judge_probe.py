"""Judge robustness probe ("One Token to Fool LLM-as-a-Judge") on the embedded default model:
the master-key false-positive and abstention rates of the SmolLM2 judge under both verdict
parsers, and of the rule verifier.

    python bench/judge_probe.py [--model DIR] [--problems data/problems.arrow] [--max-problems 32]

Runs `rwpipe probe` once per `annotate.judge.verdict_parse` (boxed, boxed_or_sentence) on a
params file made from the shipped one; the full outputs go to bench/results/probe/<parse>.json
(an existing one is reused unless --rerun, and then has no `<parse>_probe_seconds`), the flat
figures and the machine facts (bench/machine.py) to bench/results/judge_probe.json.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import machine
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results"
CLI = [
    sys.executable,
    "-c",
    "import sys; from stages.cli import main; sys.argv[0]='rwpipe'; main()",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="data/models/smollm2-135m-instruct")
    ap.add_argument("--problems", default="data/problems.arrow")
    ap.add_argument("--max-problems", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--rerun", action="store_true")
    machine.add_arguments(ap)
    args = ap.parse_args()
    started = machine.start(args.other_work)

    flat: dict = {"model": Path(args.model).name}
    for parse in ("boxed", "boxed_or_sentence"):
        out = OUT / "probe" / f"{parse}.json"
        if args.rerun or not out.exists():
            params = yaml.safe_load((ROOT / "params.yaml").read_text())
            params["annotate"]["judge"] |= {"verdict_parse": parse,
                                            "max_new_tokens": args.max_new_tokens}  # fmt: skip
            path = OUT / "probe" / f"params-{parse}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(params, sort_keys=False))
            start = time.perf_counter()
            subprocess.run([*CLI, "probe", args.problems, args.model, out, "--max-problems",
                            str(args.max_problems), "-p", path], cwd=ROOT, check=True)  # fmt: skip
            flat[f"{parse}_probe_seconds"] = round(time.perf_counter() - start, 1)
        got = json.loads(out.read_text())
        flat["problems"] = got["problems"]
        flat[f"{parse}_max_new_tokens"] = got.get("max_new_tokens")
        flat[f"{parse}_judge_fp_mean"] = round(got["judge_mean"], 4)
        flat[f"{parse}_judge_abstained_mean"] = round(got.get("judge_abstained_mean", 0.0), 4)
        flat["rule_fp_mean"] = got["rule_mean"]
        for key, rate in got["judge_false_positive"].items():
            flat[f"{parse}_judge_fp_{key}"] = round(rate, 4)
            if "judge_abstained" in got:
                flat[f"{parse}_judge_abstained_{key}"] = round(got["judge_abstained"][key], 4)
    flat = machine.write_results(OUT / "judge_probe.json", flat, started)
    print(json.dumps(flat, indent=1))


if __name__ == "__main__":
    main()
