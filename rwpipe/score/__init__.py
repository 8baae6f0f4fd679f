"""One scoring layer for every reward model: rwpipe's own ORMs and PRMs, and external PRMs in
the three input conventions found in the wild.

A `Scorer` maps solutions (question, chat prompt, steps) to an outcome score and one score per
step, each a probability-like value in [0, 1] where higher is better (an implicit PRM's step
scores are its summed log-ratio rewards instead: unbounded, higher is better).

Formats (`format="auto"` detects them):
- `rwpipe`: a directory written by `rwpipe train-rm` / `train-prm` (`rwpipe-model.json` says
  its kind, step tag and beta); reads the chat prompt the policy saw.
- `math_shepherd`: a causal LM; each step is followed by " ки" and the step score is
  softmax over the logits of the "+" and "-" tokens at the tag, P("+"). Input: question, a
  space, the steps (math-shepherd-mistral-7b-prm).
- `qwen_prm`: the Qwen2.5-Math-PRM convention: chat template (system "Please reason step by
  step...", user question), the assistant turn = steps each followed by "<extra_0>"; a
  2-class head per token, step score = P(class 1) at each "<extra_0>".
- `trl_prm`: TRL's PRMTrainer convention: token classification with 2 labels; prompt, then
  each step followed by the separator ("\\n"); step score = P(class 1) at the separator's last
  token.

`score_rows` is the one batch-scoring loop (with a progress bar) that `rwpipe eval` and
`rwpipe score` share, and `run` is the `rwpipe score` command in one call. torch and
transformers are imported inside the functions that use them, so importing this module is
light (the CLI's `--help` imports it).
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rwpipe.errors import InputError
from rwpipe.steps import Solution

if TYPE_CHECKING:
    import pyarrow as pa

    from rwpipe.train.data import Example

QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
MS_TAG, MS_GOOD, MS_BAD = "ки", "+", "-"
QWEN_TAG = "<extra_0>"


def detect_format(model_dir: str | Path) -> str:
    """Which convention a model directory follows (see the module docstring)."""
    path = Path(model_dir)
    if (path / "rwpipe-model.json").is_file():
        return "rwpipe"
    config = (
        json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    )
    arch = " ".join(config.get("architectures") or [])
    vocab = ""
    for name in ("tokenizer.json", "added_tokens.json", "tokenizer_config.json"):
        if (path / name).is_file():
            vocab += (path / name).read_text(errors="ignore")
    if QWEN_TAG in vocab and (
        "RewardModel" in arch or "ProcessReward" in arch or "TokenClass" in arch
    ):
        return "qwen_prm"
    if "TokenClassification" in arch:
        return "trl_prm"
    if MS_TAG in vocab and "CausalLM" in arch:
        return "math_shepherd"
    raise InputError(
        f"{model_dir}: cannot tell the reward model's format; set it (rwpipe, math_shepherd, "
        "qwen_prm, trl_prm)"
    )


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
        self.format = detect_format(model_dir) if fmt == "auto" else fmt
        self.max_length, self.separator = max_length, separator
        self.name = Path(model_dir).name
        if self.format == "rwpipe":
            from rwpipe.train.backbone import CARD, load_backbone

            card = json.loads((Path(model_dir) / CARD).read_text())
            self.kind = card["kind"]
            self.backbone = load_backbone(
                model_dir, self.kind, device=self.device, dtype=dtype,
                step_tag=card.get("step_tag", ""), beta=card.get("beta", 0.05),
            )  # fmt: skip
            self.backbone.model.eval()
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
        elif self.format == "trl_prm":
            cls = AutoModelForTokenClassification
        else:
            raise InputError(f"{model_dir}: unknown reward-model format {self.format!r}")
        self.model = cls.from_pretrained(
            model_dir, dtype=dtype, trust_remote_code=trust_remote_code
        )
        self.model.to(self.device).eval()

    # -- encodings of each format ---------------------------------------------------------------

    def _encode(self, s: Solution) -> "Example":
        from rwpipe.train.data import Example, encode_solution

        if self.format == "rwpipe":
            return self.backbone.encode(s.prompt, s.steps, self.max_length)
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

    def score(self, solutions: Sequence[Solution], batch_size: int = 8) -> list[tuple]:
        """(outcome score or None, step scores) per solution, in order.

        A PRM's outcome score is its last step's score; None when no step fit in max_length.
        """
        import torch

        out: list[tuple] = []
        with torch.no_grad():
            for i in range(0, len(solutions), batch_size):
                examples = [self._encode(s) for s in solutions[i : i + batch_size]]
                if self.format == "rwpipe":
                    out.extend(self.backbone.score(examples))
                else:
                    out.extend(self._score_batch(examples))
        return out

    def _score_batch(self, examples: Sequence["Example"]) -> list[tuple]:
        import torch

        from rwpipe.train.data import pad_batch

        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
        ids, mask = pad_batch([e.input_ids for e in examples], pad)
        ids_t = torch.tensor(ids, device=self.device)
        logits = self.model(
            input_ids=ids_t, attention_mask=torch.tensor(mask, device=self.device)
        ).logits
        if self.format == "math_shepherd":
            probs = logits[..., self.candidates].float().softmax(-1)[..., 0]
        else:
            probs = logits.float().softmax(-1)[..., 1]
        out = []
        for b, e in enumerate(examples):
            steps = [float(probs[b, p]) for p in e.step_ends]
            out.append((steps[-1] if steps else None, steps))
        return out


def score_rows(
    scorer: Scorer, rows: Sequence[Mapping[str, Any]], batch_size: int, label: str
) -> list[tuple[float | None, list[float]]]:
    """Score artifact rows (rollouts or labels: question, prompt, steps) in batches, showing
    progress as `label`.

    Returns:
        (outcome score or None, step scores) per row, in order (`Scorer.score`).
    """
    from rwpipe.progress import progress_bar

    out: list[tuple[float | None, list[float]]] = []
    with progress_bar(len(rows), label, "solutions") as advance:
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            sols = [Solution(r["question"], r["prompt"], r["steps"]) for r in chunk]
            out.extend(scorer.score(sols, batch_size))
            advance(len(chunk), 0)
    return out


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
        InputError: no solutions to score, or no model directory (before the model loads).
    """
    import pyarrow as pa

    from rwpipe.artifacts import read_artifact
    from rwpipe.runtime import pick_device

    table = read_artifact(rollouts, ("rollouts", "labels"))
    if table.num_rows == 0:
        raise InputError(f"{rollouts}: no solutions to score")
    if not (reward_model / "config.json").is_file():
        raise InputError(f"{reward_model}: not a model directory (no config.json)")
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
