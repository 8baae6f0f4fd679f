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
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rwpipe.errors import InputError
from rwpipe.steps import Solution
from rwpipe.train.data import Example, encode_solution, pad_batch

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

    def _encode(self, s: Solution) -> Example:
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

    @torch.no_grad()
    def score(self, solutions: Sequence[Solution], batch_size: int = 8) -> list[tuple]:
        """(outcome score or None, step scores) per solution, in order.

        A PRM's outcome score is its last step's score; None when no step fit in max_length.
        """
        out: list[tuple] = []
        for i in range(0, len(solutions), batch_size):
            examples = [self._encode(s) for s in solutions[i : i + batch_size]]
            if self.format == "rwpipe":
                out.extend(self.backbone.score(examples))
                continue
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
            for b, e in enumerate(examples):
                steps = [float(probs[b, p]) for p in e.step_ends]
                out.append((steps[-1] if steps else None, steps))
        return out
