"""BENCHMARKS.md's tables and README.md's measured figures, generated from bench/results/*.json.

    python bench/report.py           # rewrite the generated regions of both files
    python bench/report.py --check   # exit 1 with a diff when the committed text differs

A generated region is `<!-- bench:NAME -->...<!-- /bench -->`, filled by the function REGIONS
maps NAME to: a block (a name without a dot: lines of Markdown) or an inline figure
(`<results file>.<figure>`: a few words inside a sentence). Text outside the regions is
hand-written; the check fails (exit 1) when:

- a region's text differs from what the results files give, or a region is unknown or unused;
- BENCHMARKS.md's hand-written prose holds a measured figure (a decimal, a percentage, a ratio,
  or an integer of 10 or more that a results file holds): figures belong in regions;
- either file keeps a placeholder (an ALL_CAPS_WORD, TODO, TBD) outside code;
- a results file's stored verdict disagrees with its stored 95% interval.

A results file without `machine_facts_version` predates bench/machine.py: its section says so
instead of naming a machine. A row the results do not hold says "not run" or "not recorded";
no figure is ever filled in by hand.
"""

import argparse
import difflib
import json
import re
import sys
import textwrap
from pathlib import Path

from machine import verdict
from report_sections import REGIONS, Results

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("BENCHMARKS.md", "README.md")
REGION = re.compile(
    r"<!-- bench:(?P<name>[a-z]\w*(?:\.\w+)?) -->(?P<body>.*?)<!-- /bench -->", re.DOTALL
)


class ReportError(Exception):
    """A results file or a document the report cannot stand behind."""


def load(directory: Path) -> Results:
    """Every bench/results/<bench>.json, by bench name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


PLACEHOLDER = re.compile(r"\b(?:[A-Z]{2,}\w*_[A-Z]{2,}[A-Z0-9]*|TODO|TBD|FIXME|XXX)\b")
# A measured-looking figure: a decimal, a percentage, a ratio (digits before a '%' or '×');
# "95%" alone is the interval level, not a result.
FIGURE = re.compile(r"(?<![\w.-])(?!95%)\d+(?:\.\d+)? ?[%×]|(?<![\w.-])\d+\.\d+(?![\w.])")
INTEGER = re.compile(r"(?<![\w.,/-])\d{2,}(?![\w.,/-])")


LIST_START = re.compile(r"\s*(?:\d+[.)]|[-+*>#|])(?:\s|$)")


def wrap(block: str, width: int = 100) -> str:
    """Paragraphs and bullets of a generated block wrapped at `width` like the hand-written
    text; tables stay as they are, and a paragraph whose wrapping would start a line with
    Markdown syntax (a list marker, a heading) stays on one line."""
    out = []
    for line in block.split("\n"):
        if not line or line.startswith("|"):
            out.append(line)
            continue
        indent = "  " if line.startswith("- ") else ""
        lines = textwrap.wrap(
            line, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
        )
        out += [line] if any(LIST_START.match(x) for x in lines[1:]) else lines
    return "\n".join(out)


def fill(text: str, res: Results, used: set[str]) -> str:
    """`text` with every region regenerated; the names met are added to `used`."""

    def one(m: re.Match) -> str:
        name = m.group("name")
        if name not in REGIONS:
            raise ReportError(f"unknown region {name!r}")
        used.add(name)
        body = REGIONS[name](res) if "." in name else wrap(REGIONS[name](res))
        return (
            f"<!-- bench:{name} -->"
            + (body if "." in name else f"\n\n{body}\n\n")
            + ("<!-- /bench -->")
        )

    return REGION.sub(one, text)


def prose(text: str) -> str:
    """The hand-written part of a document: no regions, code, or HTML comments."""
    text = REGION.sub(" ", text)
    text = re.sub(r"```.*?```", " ", text, flags=re.DOTALL)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.DOTALL)
    return re.sub(r"`[^`]*`", " ", text)


def _integers(res: Results) -> set[int]:
    return {v for r in res.values() for v in r.values() if type(v) is int and v >= 10}


def problems(docs: dict[str, str], res: Results) -> list[str]:
    """Everything the check refuses besides a stale region: placeholders, hand-typed
    figures in BENCHMARKS.md, verdicts that disagree with their intervals."""
    out = []
    for name, text in docs.items():
        out += [f"{name}: placeholder {m.group(0)!r}" for m in PLACEHOLDER.finditer(prose(text))]
        for m in REGION.finditer(text):
            line_start = not text[text.rfind("\n", 0, m.start()) + 1 : m.start()].strip()
            if "." in m.group("name") and line_start:
                # A line that starts with "<!--" is an HTML block: Markdown would print the
                # rest of the line raw and break the paragraph.
                out.append(f"{name}: inline region {m.group('name')!r} starts a line")
            elif "." not in m.group("name") and not line_start:
                out.append(f"{name}: block region {m.group('name')!r} must start a line")
    bench = prose(docs.get("BENCHMARKS.md", ""))
    out += [
        f"BENCHMARKS.md: figure {m.group(0)!r} outside a region" for m in FIGURE.finditer(bench)
    ]
    ints = _integers(res)
    out += [
        f"BENCHMARKS.md: integer {m.group(0)} (a results value) outside a region"
        for m in INTEGER.finditer(bench)
        if int(m.group(0)) in ints
    ]
    for stem, r in res.items():
        for key, stored in r.items():
            if not key.endswith("_verdict"):
                continue
            p = key[: -len("_verdict")]
            lo, hi = (
                r.get(f"{p}_ci95_lo", r.get(f"{p}_delta_ci95_lo")),
                r.get(f"{p}_ci95_hi", r.get(f"{p}_delta_ci95_hi")),
            )
            if lo is None or hi is None:
                out.append(f"{stem}.json: {key} has no interval")
            elif stored != verdict(lo, hi):
                want = verdict(lo, hi)
                out.append(f"{stem}.json: {key} is {stored!r}, its interval gives {want!r}")
    return out


def render(root: Path) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """(committed text, generated text, problems) of each document under `root`."""
    res = load(root / "bench" / "results")
    before = {d: (root / d).read_text() for d in DOCS if (root / d).exists()}
    used: set[str] = set()
    after = {d: fill(t, res, used) for d, t in before.items()}
    issues = [f"region {n!r} appears in no document" for n in REGIONS if n not in used]
    return before, after, issues + problems(after, res)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 on any difference")
    ap.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        before, after, issues = render(args.root)
    except (ReportError, KeyError) as e:
        print(f"bench/report.py: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    stale = [d for d in before if before[d] != after[d]]
    for d in stale:
        if args.check:
            sys.stdout.writelines(
                difflib.unified_diff(
                    before[d].splitlines(True),
                    after[d].splitlines(True),
                    f"{d} (committed)",
                    f"{d} (from bench/results)",
                )
            )
        else:
            (args.root / d).write_text(after[d])
            print(f"wrote {d}")
    for issue in issues:
        print(f"bench/report.py: {issue}", file=sys.stderr)
    if args.check and stale:
        print(
            f"bench/report.py: {', '.join(stale)} differ from bench/results; run"
            " `python bench/report.py`",
            file=sys.stderr,
        )
    return 1 if issues or (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
