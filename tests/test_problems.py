"""Tests for rwpipe.prepare (synthetic, loaders, contamination): pytest tests/test_problems.py"""

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from math_verify import parse, verify

from rwpipe.artifacts import validate
from rwpipe.config import PrepareConfig, SyntheticConfig
from rwpipe.errors import InputError
from rwpipe.prepare import build_problems, contamination_report, generate_synthetic, loaders
from rwpipe.prepare.loaders import last_boxed, load_problems, normalize_answer, read_rows
from rwpipe.prepare.synthetic import KINDS

DATA = Path("/work/shared/data")
GSM8K_TEST, GSM8K_TRAIN = DATA / "gsm8k/test.jsonl", DATA / "gsm8k/train.jsonl"
MATH500 = DATA / "math500/test.jsonl"
needs_data = pytest.mark.skipif(not GSM8K_TEST.is_file(), reason="shared data not present")


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# ----------------------------------------------------------------------------------------------
# Synthetic


def test_every_synthetic_gold_verifies_and_a_perturbed_value_fails():
    rows = generate_synthetic(300, 0, KINDS, "train")
    for row in rows:
        gold = parse(row["answer"])
        assert verify(gold, parse(row["answer"])), row
        assert verify(gold, parse(row["solution"])), row  # the worked solution ends in the gold
        assert not verify(gold, parse(str(int(row["answer"]) + 1))), row


def test_synthetic_rows_fit_the_problems_schema():
    rows = generate_synthetic(60, 1, KINDS, "eval")
    validate(pa.Table.from_pylist(rows), "problems", "synthetic")
    assert Counter(r["category"] for r in rows) == {k: 10 for k in KINDS}  # mixed evenly
    assert all(r["problem_id"].startswith(f"syn-{r['category']}-") for r in rows)
    assert all(r["solution"].endswith(f"\\boxed{{{r['answer']}}}.") for r in rows)
    assert {r["level"] for r in rows} == {1, 2, 3, 4, 5}
    chain = [r for r in rows if r["category"] == "chain"]
    assert all(r["solution"].count("\n\n") >= 2 for r in chain)  # multi-step: >= 3 steps


def test_synthetic_is_deterministic_across_processes():
    rows = generate_synthetic(24, 7, KINDS, "train")
    assert rows == generate_synthetic(24, 7, KINDS, "train")
    assert rows[:10] == generate_synthetic(10, 7, KINDS, "train")  # a prefix of a longer run
    other = generate_synthetic(24, 8, KINDS, "train")
    assert [r["question"] for r in rows] != [r["question"] for r in other]
    code = (
        "import json; from rwpipe.prepare.synthetic import generate_synthetic, KINDS; "
        "print(json.dumps(generate_synthetic(24, 7, KINDS, 'train')))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # str hash() differs from this process
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert json.loads(out.stdout) == rows, out.stderr


def test_synthetic_questions_are_unique_and_exclude_is_respected():
    train = generate_synthetic(600, 0, KINDS, "train")
    assert len({r["question"] for r in train}) == 600
    exclude = frozenset(r["question"] for r in train)
    eval_ = generate_synthetic(300, 0, KINDS, "eval", exclude=exclude)  # same seed on purpose
    assert not exclude & {r["question"] for r in eval_}
    assert len({r["question"] for r in eval_}) == 300


def test_synthetic_rejects_unknown_kinds_and_exhausted_kinds():
    with pytest.raises(ValueError, match="unknown synthetic kinds"):
        generate_synthetic(3, 0, ("add", "divide"), "train")
    assert len(generate_synthetic(150, 0, ("mul",), "train")) == 150
    with pytest.raises(ValueError, match="'mul': no new question"):
        generate_synthetic(193, 0, ("mul",), "train")  # only 24 * 8 = 192 products exist


def test_synthetic_kinds_match_the_config_literal():
    from typing import get_args

    from rwpipe.config import SyntheticKind

    assert set(get_args(SyntheticKind)) == set(KINDS)
    assert set(SyntheticConfig().kinds) <= set(KINDS)


# ----------------------------------------------------------------------------------------------
# Answers and boxes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r"The answer is $\boxed{\text{(C)}}$", r"\text{(C)}"),
        (r"first \boxed{1}, finally \boxed{x^{2}+\sqrt{3}}", r"x^{2}+\sqrt{3}"),
        (r"$\boxed{\{1, 2\}}$", r"\{1, 2\}"),
        (r"\boxed 5.$", "5"),
        (r"\fbox{42}", "42"),
        (r"\boxed{3", None),
        ("no box at all", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1,000", "1000"),
        (" $18.90 ", "18.90"),
        (r"\$5", "5"),
        (r"10,\!080", "10080"),
        (r"11,\! 111,\! 111,\! 100", "11111111100"),
        ("1,-2", "1,-2"),  # a list, not a grouped number
        (r"$\frac{1}{2}$", r"\frac{1}{2}"),
        ("7.", "7"),
        ("  ", None),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


# ----------------------------------------------------------------------------------------------
# Loaders


@needs_data
def test_gsm8k_loader_matches_hand_checked_rows():
    rows = load_problems(str(GSM8K_TEST), "eval", "gsm8k", 0, 0, "test")
    assert len(rows) == 873
    # Indexes 2, 98 and 153 of the file; checked by reading the `#### ...` lines.
    assert rows[2]["answer"] == "20"  # Wendi's chickens
    assert rows[98]["answer"] == "2125"  # "#### 2,125"
    assert rows[153]["answer"] == "276000"  # "#### 276,000"
    assert rows[98]["question"].startswith("Johnny is picking up the toys")
    assert rows[2]["problem_id"] == "gsm8k-2" and rows[2]["source"] == "gsm8k"
    assert "<<" not in rows[153]["solution"] and "####" not in rows[153]["solution"]
    assert rows[153]["solution"].startswith("The cars cost 20000*12=$240,000")
    assert load_problems(str(GSM8K_TEST), "eval", "auto", 0, 0, "test") == rows


@needs_data
def test_math_loader_uses_the_answer_field():
    rows = load_problems(str(MATH500), "eval", "auto", 0, 0, "test")
    assert len(rows) == 348
    first = rows[0]
    assert first["problem_id"] == "test/precalculus/807.json"
    assert first["answer"] == r"\left( 3, \frac{\pi}{2} \right)"
    assert (first["category"], first["level"], first["source"]) == ("Precalculus", 2, "math")
    assert rows[140]["answer"] == "10080"  # "10,\!080" in the file
    assert rows[176]["answer"] == r"\text{(E)}"  # line 177
    # rwpipe.verify wraps bare LaTeX gold in $...$; then math-verify reads it.
    assert verify(parse(f"${first['answer']}$"), parse(r"$\boxed{(3, \pi/2)}$"))


def test_math_loader_falls_back_to_the_last_box(tmp_path):
    records = [
        {"problem": "Half?", "solution": r"It is $\boxed{\frac{1}{2}}$.", "level": "Level 3"},
        {"problem": "Pick.", "solution": r"So $\boxed{\text{(C)}}$.", "subject": "Algebra"},
        {"problem": "None.", "solution": "no box"},
    ]
    loaded = read_rows(str(_write_jsonl(tmp_path / "m.jsonl", records)), "train", "math", "")
    assert [r["answer"] for r in loaded.rows] == [r"\frac{1}{2}", r"\text{(C)}"]
    assert loaded.rows[0]["level"] == 3 and loaded.rows[1]["category"] == "Algebra"
    assert loaded.dropped == 1


def test_generic_formats_from_json_parquet_and_directories(tmp_path):
    import pyarrow.parquet as pq

    (tmp_path / "d").mkdir()
    records = [{"prompt": "1+1?", "final_answer": 2, "id": "a"}, {"question": "2+2?", "gold": "4"}]
    (tmp_path / "d" / "a.json").write_text(json.dumps(records))
    pq.write_table(
        pa.Table.from_pylist([{"question": "3+3?", "answer": "6"}]), tmp_path / "d/b.parquet"
    )
    rows = load_problems(str(tmp_path / "d"), "train", "auto", 0, 0, "")
    assert [(r["problem_id"], r["question"], r["answer"]) for r in rows] == [
        ("a", "1+1?", "2"),
        ("d-1", "2+2?", "4"),
        ("d-2", "3+3?", "6"),
    ]


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": "#### 1"}\n{"question": \n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2: not valid JSON"):
        load_problems(str(path), "train", "auto", 0, 0, "")


def test_missing_columns_name_file_and_found_columns(tmp_path):
    path = _write_jsonl(tmp_path / "cols.jsonl", [{"text": "q", "label": 1}])
    with pytest.raises(InputError, match=r"cols\.jsonl.*columns found: label, text"):
        load_problems(str(path), "train", "auto", 0, 0, "")
    with pytest.raises(InputError, match="'gsm8k' needs question, answer"):
        load_problems(str(path), "train", "gsm8k", 0, 0, "")


def test_no_usable_rows_is_an_error(tmp_path):
    path = _write_jsonl(tmp_path / "empty.jsonl", [{"question": "q", "answer": " "}])
    with pytest.raises(InputError, match=r"no usable rows \(1 without a question or gold answer\)"):
        load_problems(str(path), "train", "generic", 0, 0, "")
    with pytest.raises(InputError, match="no such file"):
        load_problems(str(tmp_path / "missing.jsonl"), "train", "auto", 0, 0, "")


def test_subset_is_seeded_and_keeps_file_order(tmp_path):
    records = [{"question": f"q{i}", "answer": str(i)} for i in range(50)]
    path = str(_write_jsonl(tmp_path / "g.jsonl", records))
    a = load_problems(path, "train", "generic", 10, 3, "")
    assert a == load_problems(path, "train", "generic", 10, 3, "")
    assert a != load_problems(path, "train", "generic", 10, 4, "")
    indexes = [int(r["answer"]) for r in a]
    assert len(a) == 10 and indexes == sorted(indexes)


def test_hub_input_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(InputError, match="hf:no-such-user/no-such-set"):
        load_problems("hf:no-such-user/no-such-set", "train", "auto", 0, 0, "train")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(loaders, "_hub_reachable", lambda: False)
    with pytest.raises(InputError, match="unreachable"):
        load_problems("hf:openai/gsm8k:main", "train", "auto", 0, 0, "train")
    assert time.monotonic() - start < 20


# ----------------------------------------------------------------------------------------------
# Contamination


def test_contamination_exact_and_ngram_overlap():
    shared = "the quick brown fox jumps over the lazy dog near the old river bank today"
    train = [f"Alice said {shared}.", "What is 14 + 7?", "A completely different problem."]
    eval_ = [
        "  WHAT is 14 +   7? ",  # exact after case-folding and whitespace collapse
        f"Bob wrote that {shared} again",  # shares 15 tokens >= 13
        "What is 14 * 7?",  # short; differs from train only in the operator
        "quick brown fox jumps over the lazy dog near the old river",  # 12 tokens, in train
        "one two three four five six seven eight nine ten eleven twelve thirteen",
    ]
    report = contamination_report(train, eval_)
    assert report["eval_total"] == 5 and report["n"] == 13
    assert report["exact"]["count"] == 1 and report["exact"]["examples"][0]["index"] == 0
    assert [e["index"] for e in report["ngram"]["examples"]] == [0, 1, 3]
    assert report["ngram"]["fraction"] == pytest.approx(3 / 5)


def test_contamination_twelve_shared_tokens_are_not_enough():
    twelve = "a b c d e f g h i j k l"
    report = contamination_report([f"x {twelve} y"], [f"z {twelve} w and more words here"])
    assert report["ngram"]["count"] == 0


@needs_data
def test_contamination_gsm8k_train_vs_test_is_small():
    train = [json.loads(line)["question"] for line in GSM8K_TRAIN.open()]
    test = [json.loads(line)["question"] for line in GSM8K_TEST.open()]
    report = contamination_report(train, test)
    # Measured: 0 exact, 2 of 873 (0.2%) share a 13-gram with a train question.
    assert report["exact"]["count"] == 0
    assert report["ngram"]["count"] == 2


# ----------------------------------------------------------------------------------------------
# build_problems


def test_build_problems_synthetic_splits():
    cfg = PrepareConfig(n_train=48, n_eval=24)
    rows, stats = build_problems(cfg, seed=0)
    train = [r for r in rows if r["split"] == "train"]
    eval_ = [r for r in rows if r["split"] == "eval"]
    assert (len(train), len(eval_)) == (48, 24)
    assert not {r["question"] for r in train} & {r["question"] for r in eval_}
    assert len({r["problem_id"] for r in rows}) == 72
    assert stats["train"]["by_category"] == {k: 8 for k in sorted(KINDS)}
    assert stats["contamination"]["exact"]["count"] == 0
    assert build_problems(cfg, seed=0)[0] == rows
    assert build_problems(cfg, seed=1)[0] != rows
    validate(pa.Table.from_pylist(rows), "problems", "build_problems")


@needs_data
def test_build_problems_one_file_is_split_by_question_hash():
    cfg = PrepareConfig(train=str(GSM8K_TEST), eval=str(GSM8K_TEST), n_train=0, n_eval=0)
    rows, stats = build_problems(cfg, seed=0)
    train_q = {r["question"] for r in rows if r["split"] == "train"}
    eval_q = {r["question"] for r in rows if r["split"] == "eval"}
    assert len(train_q) + len(eval_q) == 873 and not train_q & eval_q
    assert 0.15 < len(eval_q) / 873 < 0.25
    assert stats["dropped"] == {str(GSM8K_TEST): 0}


@needs_data
def test_build_problems_two_files_get_unique_ids():
    cfg = PrepareConfig(train=str(GSM8K_TRAIN), eval=str(GSM8K_TEST), n_train=100, n_eval=20)
    rows, stats = build_problems(cfg, seed=0)
    assert len({r["problem_id"] for r in rows}) == 120
    assert all(r["problem_id"].startswith("eval-gsm8k-") for r in rows if r["split"] == "eval")
    assert stats["eval"]["by_source"] == {"gsm8k": 20}
    validate(pa.Table.from_pylist(rows), "problems", "build_problems")


def test_import_pulls_in_nothing_heavy():
    code = (
        "import sys, rwpipe.prepare; "
        "heavy = {'torch', 'transformers', 'datasets', 'math_verify'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
