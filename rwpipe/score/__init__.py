"""One scoring layer for every reward model: rwpipe's own ORMs and PRMs, and external PRMs in
the three input conventions found in the wild.

A `Scorer` maps solutions (question, chat prompt, steps) to an outcome score and one score per
step, each a probability-like value in [0, 1] where higher is better (an implicit PRM's step
scores are its summed log-ratio rewards instead: unbounded, higher is better).

Formats (`format="auto"` detects each from what marks it; a directory that is none of them,
such as a base model written by `rwpipe model`, is refused in one line):
- `rwpipe`: a directory written by `rwpipe train-rm` / `train-prm`: its `rwpipe-model.json`
  has `kind` orm, prm, implicit_prm or generative_prm (and its step tag and beta; an implicit
  PRM's card also names its reference model, kept in `reference/`, which must be there
  unchanged). Reads the chat prompt the policy saw; a generative PRM reads the question and
  the steps in its verification request and is scored at its verdicts (`rwpipe.critique`).
  (`rwpipe model` writes a card of the same name, of kind
  alias / local / hub: that is a base model, not a reward model.)
- `math_shepherd`: a causal LM; each step is followed by " ки" and the step score is
  softmax over the logits of the "+" and "-" tokens at the tag, P("+"). Input: question, a
  space, the steps (math-shepherd-mistral-7b-prm). Detected when the architecture is a causal
  LM, "ки", "+" and "-" are whole tokens, and a name (the directory's, its hub repository's
  or the config's `_name_or_path`; for a directory written by `rwpipe model`, its source)
  says "shepherd" or "prm": "ки" alone is a token of every Mistral-family vocabulary, and
  nothing in the weights tells a Math-Shepherd PRM from its base model. Elsewhere pass
  `--format math_shepherd`.
- `qwen_prm`: the Qwen2.5-Math-PRM convention: chat template (system "Please reason step by
  step...", user question), the assistant turn = steps each followed by "<extra_0>"; a
  2-class head per token, step score = P(class 1) at each "<extra_0>". Detected by the
  architecture (`*ForProcessRewardModel`, remote code: needs `--trust-remote-code`), or
  token classification with 2 labels and "<extra_0>" a whole token.
- `trl_prm`: TRL's PRMTrainer convention: token classification with 2 labels; prompt, then
  each step followed by the separator ("\\n"); step score = P(class 1) at the separator's last
  token.

An explicit format is checked too (the card's kind for `rwpipe`, the architecture, the label
count and the tokens for the others), and an external model whose checkpoint lacks weights
of the head its format reads is refused rather than scored with a random head.

`score_rows` is the one batch-scoring loop (with a progress bar) that `rwpipe eval` and
`rwpipe score` share, and `run` is the `rwpipe score` command in one call. torch and
transformers are imported inside the functions that use them, so importing this module is
light (the CLI's `--help` imports it).
"""

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from rwpipe.artifacts import check_model_dir
from rwpipe.errors import InputError
from rwpipe.steps import Solution

if TYPE_CHECKING:
    import pyarrow as pa

    from rwpipe.train.data import Example

QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
MS_TAG, MS_GOOD, MS_BAD = "ки", "+", "-"
QWEN_TAG = "<extra_0>"


FORMATS = ("rwpipe", "math_shepherd", "qwen_prm", "trl_prm")
# a name that marks a Math-Shepherd-style PRM: "shepherd", or "prm" not inside a word
PRM_NAME = re.compile(r"shepherd|(?<![a-z])prm", re.IGNORECASE)


def detect_format(model_dir: str | Path, fmt: str = "auto") -> str:
    """Which convention a reward-model directory follows (see the module docstring); with a
    format other than `auto`, check that the directory can be read in it. Reads config,
    card and tokenizer files only; no weights.

    Raises:
        InputError: one line naming the directory and what was found, when it is not a model
            directory, not a reward model in any (or the given) format, or an rwpipe implicit
            PRM without its reference model.
    """
    from rwpipe.train.backbone import CARD, KINDS, read_card, reference_dir

    path = Path(model_dir)
    if fmt != "auto" and fmt not in FORMATS:
        raise InputError(f"unknown reward-model format {fmt!r} (auto, {', '.join(FORMATS)})")
    check_model_dir(path)
    card = read_card(path) or {}
    if card.get("kind") in KINDS:
        if card["kind"] == "implicit_prm":
            reference_dir(path, card)  # refused now, before any model loads
        if fmt in ("auto", "rwpipe"):
            return "rwpipe"
    elif fmt == "rwpipe":
        kinds = ", ".join(KINDS)
        raise InputError(f"{path}: not an rwpipe reward model (no {CARD} of kind {kinds}): "
                         f"found {_found(path, card)}")  # fmt: skip
    facts = _Facts.read(path, card)
    if fmt == "auto":
        for name in ("qwen_prm", "trl_prm", "math_shepherd"):
            if facts.fits(name, named=True):
                return name
        hint = ""
        if facts.fits("math_shepherd", named=False):
            hint = "; if it is a Math-Shepherd-style PRM, pass --format math_shepherd"
        raise InputError(f"{path}: not a reward model rwpipe can read: found "
                         f"{_found(path, card, facts)}{hint}")  # fmt: skip
    if not facts.fits(fmt, named=False):
        raise InputError(f"{path}: not a {fmt} reward model ({REQUIRES[fmt]}): found "
                         f"{_found(path, card, facts)}")  # fmt: skip
    return fmt


REQUIRES = {
    "math_shepherd": f"a causal LM with {MS_TAG!r}, {MS_GOOD!r} and {MS_BAD!r} as tokens",
    "qwen_prm": f"a process reward model or 2-label token classifier with a {QWEN_TAG!r} token",
    "trl_prm": "a token classifier with 2 labels",
}


class _Facts(NamedTuple):
    """What the files of a model directory say about its reading."""

    architectures: list[str]
    num_labels: int
    tokens: dict[str, bool]  # tag -> whether it is a whole token of the vocabulary
    names: list[str]  # names of the model: directory, hub repository, config, source

    @classmethod
    def read(cls, path: Path, card: Mapping[str, Any]) -> "_Facts":
        config = _config(path)
        archs = [str(a) for a in config.get("architectures") or []]
        labels = config.get("id2label")
        num_labels = len(labels) if labels else int(config.get("num_labels", 2))
        tokens = {t: False for t in (MS_TAG, MS_GOOD, MS_BAD, QWEN_TAG)}
        if any(_is(a, "ForCausalLM", "ForTokenClassification", "ForProcessRewardModel")
               for a in archs):  # fmt: skip
            tokenizer = _tokenizer(path)
            tokens = {t: tokenizer is not None and _whole_token(tokenizer, t) for t in tokens}
        if "source" in card:  # written by `rwpipe model`: the source names it, not OUT_DIR
            names = [str(card["source"])]
        else:
            names = [path.resolve().name, str(config.get("_name_or_path") or "")]
            if path.resolve().parent.name == "snapshots":  # hub cache: models--org--name/...
                names.append(path.resolve().parent.parent.name)
        return cls(archs, num_labels, tokens, [n for n in names if n])

    def fits(self, fmt: str, named: bool) -> bool:
        """Whether the directory reads as `fmt`; `named`: as auto-detection requires."""
        token = any(_is(a, "ForTokenClassification") for a in self.architectures)
        if fmt == "qwen_prm":
            qwen = any(_is(a, "ForProcessRewardModel") for a in self.architectures)
            return self.tokens[QWEN_TAG] and (qwen or (token and self.num_labels == 2))
        if fmt == "trl_prm":
            return token and self.num_labels == 2
        causal = any(_is(a, "ForCausalLM") for a in self.architectures)
        tagged = all(self.tokens[t] for t in (MS_TAG, MS_GOOD, MS_BAD))
        return causal and tagged and (not named or any(PRM_NAME.search(n) for n in self.names))


def _config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads((path / "config.json").read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path / 'config.json'}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise InputError(f"{path / 'config.json'}: not a JSON object")
    return config


def _is(arch: str, *suffixes: str) -> bool:
    return arch.endswith(suffixes)


def _tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no usable tokenizer: no tag is a token


def _whole_token(tokenizer: Any, text: str) -> bool:
    """Whether `text` is one token of the vocabulary (as the last token of its encoding)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    return bool(ids) and tokenizer.decode(ids[-1:]).strip() == text


def _found(path: Path, card: Mapping[str, Any], facts: "_Facts | None" = None) -> str:
    """What a directory that is not the reward model asked for holds, in a few words."""
    if facts is None:
        config = _config(path)
        archs = ", ".join(str(a) for a in config.get("architectures") or []) or "?"
    else:
        archs = ", ".join(facts.architectures) or "no architecture"
    if "source" in card:  # rwpipe.model.materialize's card
        return (f"a base model written by `rwpipe model` (source {card['source']!r}, {archs}); "
                "train a reward model with `rwpipe train-rm` / `train-prm`")  # fmt: skip
    what = archs
    if facts is not None:
        if any(_is(a, "ForTokenClassification") for a in facts.architectures):
            what += f" with {facts.num_labels} label(s)"
        have = [t for t, ok in facts.tokens.items() if ok and t in (MS_TAG, QWEN_TAG)]
        what += f", tag tokens {', '.join(map(repr, have))}" if have else ", no step-tag token"
    if card:
        what += f", {card.get('kind')!r} in its rwpipe-model.json"
    return what


class Scorer:
    """Scores solutions with one reward model; see the module docstring for the formats."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        fmt: str = "auto",
        device: Any = None,
        dtype: Any = None,
        max_length: int = 2048,
        separator: str = "\n",
        trust_remote_code: bool = False,
    ) -> None:
        from rwpipe.runtime import default_dtype, pick_device

        self.device = device if device is not None else pick_device("auto")
        dtype = dtype if dtype is not None else default_dtype(self.device)
        self.format = detect_format(model_dir, fmt)
        self.max_length, self.separator = max_length, separator
        self.name = Path(model_dir).name
        if self.format == "rwpipe":
            from rwpipe.train.backbone import load_saved

            self.backbone = load_saved(model_dir, device=self.device, dtype=dtype)
            self.kind = self.backbone.kind
            return
        from transformers import (
            AutoModel,
            AutoModelForCausalLM,
            AutoModelForTokenClassification,
            AutoTokenizer,
        )

        self.kind = "prm"
        self.tokenizer = AutoTokenizer.from_pretrained(
            model_dir, trust_remote_code=trust_remote_code
        )
        if self.format == "math_shepherd":
            cls = AutoModelForCausalLM
            good, bad = (
                self.tokenizer.encode(t, add_special_tokens=False)[-1] for t in (MS_GOOD, MS_BAD)
            )
            self.candidates = [good, bad]
            self.tag_id = self.tokenizer.encode(MS_TAG, add_special_tokens=False)[-1]
        elif self.format == "qwen_prm":
            cls = AutoModelForTokenClassification if not trust_remote_code else AutoModel
            self.tag_id = self.tokenizer.convert_tokens_to_ids(QWEN_TAG)
        else:
            cls = AutoModelForTokenClassification
        self.model, info = cls.from_pretrained(
            model_dir, dtype=dtype, trust_remote_code=trust_remote_code, output_loading_info=True
        )
        if info["missing_keys"]:  # the head the format reads is not in the checkpoint
            need = " (remote code: --trust-remote-code)" if self.format == "qwen_prm" else ""
            raise InputError(
                f"{model_dir}: {len(info['missing_keys'])} weight(s) of a {self.format} model "
                f"are not in the checkpoint (e.g. {sorted(info['missing_keys'])[0]}): not a "
                f"{self.format} reward model{need}"
            )
        self.model.to(self.device).eval()

    # -- encodings of each format ---------------------------------------------------------------

    def _encode(self, s: Solution) -> "Example":
        from rwpipe.train.data import Example, encode_solution

        if self.format == "rwpipe":
            return self.backbone.encode(s.prompt, s.steps, self.max_length, s.question)
        if self.format == "math_shepherd":
            steps = [step.rstrip() + f" {MS_TAG}\n" for step in s.steps]
            enc = encode_solution(self.tokenizer, s.question + " ", steps, "", self.max_length)
            # the tag is the last token of each piece only if "\n" tokenises apart; find it
            ends = [self._last(enc.input_ids, self.tag_id, end) for end in enc.step_ends]
            return Example(enc.input_ids, enc.prompt_len, ends)
        if self.format == "qwen_prm":
            messages = [
                {"role": "system", "content": QWEN_SYSTEM},
                {"role": "user", "content": s.question},
            ]
            prompt = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            steps = [step.strip() + QWEN_TAG for step in s.steps]
            enc = encode_solution(self.tokenizer, prompt, steps, "", self.max_length)
            return Example(enc.input_ids, enc.prompt_len, enc.step_ends)
        steps = [step.strip() + self.separator for step in s.steps]
        enc = encode_solution(self.tokenizer, s.question, steps, "", self.max_length)
        return Example(enc.input_ids, enc.prompt_len, enc.step_ends)

    @staticmethod
    def _last(ids: list[int], token: int, end: int) -> int:
        for pos in range(end, -1, -1):
            if ids[pos] == token:
                return pos
        return end

    # -- scoring -------------------------------------------------------------------------------

    def score(
        self,
        solutions: Sequence[Solution],
        batch_size: int = 8,
        advance: Callable[[int, int], None] | None = None,
    ) -> list[tuple]:
        """(outcome score or None, step scores) per solution, in order.

        A PRM's outcome score is its last step's score; None when no step fit in max_length.
        `advance(solutions, tokens)` is called after each batch (a progress bar's).
        """
        import torch

        examples = [self._encode(s) for s in solutions]
        # batches of similar lengths: padding to the longest in a batch is the waste (ProcessBench
        # items run from 100 to 1,600 tokens); right padding and causal attention keep each
        # score independent of its batch-mates
        order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
        out: list[tuple] = [None] * len(examples)  # type: ignore[list-item]
        with torch.no_grad():
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                batch = [examples[j] for j in idx]
                got = (
                    self.backbone.score(batch)
                    if self.format == "rwpipe"
                    else self._score_batch(batch)
                )
                for j, scored in zip(idx, got, strict=True):
                    out[j] = scored
                if advance is not None:
                    advance(len(batch), sum(len(e.input_ids) for e in batch))
        return out

    def _score_batch(self, examples: Sequence["Example"]) -> list[tuple]:
        from rwpipe.config import PAD_TO_MULTIPLE_OF
        from rwpipe.train.backbone import batch_tensors

        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
        seqs = [e.input_ids for e in examples]
        ids, mask = batch_tensors(self.model, seqs, pad, self.device, PAD_TO_MULTIPLE_OF)
        logits = self.model(input_ids=ids, attention_mask=mask).logits
        if self.format == "math_shepherd":
            probs = logits[..., self.candidates].float().softmax(-1)[..., 0]
        else:
            probs = logits.float().softmax(-1)[..., 1]
        out = []
        for b, e in enumerate(examples):
            steps = [float(probs[b, p]) for p in e.step_ends]
            out.append((steps[-1] if steps else None, steps))
        return out


class VoteScorer:
    """A generative PRM scored by the vote over K critiques it samples per solution
    (`rwpipe.critique.vote_scores`), with the same `score` as `Scorer`. A solution none of
    whose critiques parses gets no scores (None, []), like one that does not fit."""

    kind = "generative_prm"

    def __init__(self, model_dir: str | Path, engine: Any, *, k: int, temperature: float,
                 max_new_tokens: int, device: str, seed: int) -> None:  # fmt: skip
        from rwpipe.backends import load_engine

        self.name, self.k, self.seed = Path(model_dir).name, k, seed
        self.format = f"rwpipe, vote of {k} sampled critiques"
        self.temperature, self.max_new_tokens = temperature, max_new_tokens
        self.generator = load_engine(model_dir, engine, device=device, seed=seed)
        self.tokens = self.unparsed = self.solutions = 0

    def score(
        self,
        solutions: Sequence[Solution],
        batch_size: int = 8,
        advance: Callable[[int, int], None] | None = None,
    ) -> list[tuple]:
        from rwpipe.backends import SamplingParams
        from rwpipe.critique import verification_request, vote_scores

        prompts = [self.generator.chat_prompt(verification_request(s.question, s.steps))
                   for s in solutions]  # fmt: skip
        params = SamplingParams(n=self.k, temperature=self.temperature, seed=self.seed,
                                max_new_tokens=self.max_new_tokens, logprobs=False)  # fmt: skip
        out: list[tuple] = []
        for s, comps in zip(solutions, self.generator.generate(prompts, params), strict=True):
            tokens = sum(len(c.token_ids) for c in comps)
            votes = vote_scores([c.text for c in comps], len(s.steps))
            self.tokens, self.solutions = self.tokens + tokens, self.solutions + 1
            self.unparsed += votes is None
            out.append((votes[-1], votes) if votes else (None, []))
            if advance is not None:
                advance(1, tokens)
        return out

    def stats(self) -> dict[str, Any]:
        return {"mode": self.format, "critiques_per_solution": self.k,
                "solutions": self.solutions, "generated_tokens": self.tokens,
                "tokens_per_solution": round(self.tokens / max(self.solutions, 1), 1),
                "unparsed_solutions": self.unparsed}  # fmt: skip

    def close(self) -> None:
        self.generator.close()


def score_rows(
    scorer: Scorer, rows: Sequence[Mapping[str, Any]], batch_size: int, label: str
) -> list[tuple[float | None, list[float]]]:
    """Score artifact rows (rollouts or labels: question, prompt, steps) in batches, showing
    progress as `label`.

    Returns:
        (outcome score or None, step scores) per row, in order (`Scorer.score`).
    """
    from rwpipe.progress import progress_bar

    sols = [Solution(r["question"], r["prompt"], r["steps"]) for r in rows]
    with progress_bar(len(rows), label, "solutions") as advance:
        return scorer.score(sols, batch_size, advance)


def run(
    rollouts: Path,
    reward_model: Path,
    *,
    fmt: str = "auto",
    batch_size: int = 8,
    max_length: int = 2048,
    device: str = "auto",
    trust_remote_code: bool = False,
) -> "pa.Table":
    """`rwpipe score`: one row per solution of a rollouts or labels artifact, with its outcome
    and step scores under one reward model (the `scores` artifact's rows).

    Args:
        rollouts: a rollouts or labels artifact (both hold the steps).
        reward_model: the reward model directory (ours or an external PRM).
        fmt: its format (see the module docstring); `auto` detects it.
        batch_size, max_length: scoring batch size and token limit per solution.
        device: `auto`, `cpu` or `cuda`.
        trust_remote_code: passed to transformers for external models.

    Raises:
        InputError: no solutions to score, or a directory that is not a reward model (in the
            format given), before the model loads.
    """
    import pyarrow as pa

    from rwpipe.artifacts import read_artifact
    from rwpipe.runtime import pick_device

    table = read_artifact(rollouts, ("rollouts", "labels"))
    if table.num_rows == 0:
        raise InputError(f"{rollouts}: no solutions to score")
    scorer = Scorer(
        reward_model, fmt=fmt, device=pick_device(device), max_length=max_length,
        trust_remote_code=trust_remote_code,
    )  # fmt: skip
    rows = table.to_pylist()
    got = score_rows(scorer, rows, batch_size, f"score ({scorer.format})")
    return pa.Table.from_pylist([
        {"problem_id": r["problem_id"], "sample_idx": r["sample_idx"], "split": r["split"],
         "model": scorer.name, "kind": scorer.kind, "format": scorer.format,
         "outcome_score": outcome, "step_scores": steps}
        for r, (outcome, steps) in zip(rows, got, strict=True)
    ])  # fmt: skip
