"""Reward-model backbones: load with the right head (and LoRA), compute losses, score, save.

Kinds:
- `orm`: sequence classification, one scalar per solution (read at its last token).
- `prm`: token classification, one logit per position, read at each step's last token.
- `implicit_prm`: a causal LM; reward = beta * log(pi / pi_ref) summed over response tokens,
  the reference being the same weights with the LoRA adapter off (or a frozen copy) while
  training. A saved implicit PRM carries its reference: the directory holds pi (LoRA merged)
  and, in `reference/`, pi_ref's weights (the base model as training saw it), with their
  sha256 in the card, so the directory alone scores and can be moved to another machine at
  the cost of a second copy of the weights. `load_saved` loads either back.
- `generative_prm`: a causal LM fine-tuned to write a verification critique
  (`rwpipe.critique`: one boxed verdict per step, then the first incorrect step). Its step
  score is P("correct") against P("incorrect") at each verdict position of the teacher-forced
  critique that judges every earlier step correct: one forward pass per solution.
"""

import contextlib
import copy
import hashlib
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rwpipe.artifacts import atomic_path
from rwpipe.config import PAD_TO_MULTIPLE_OF
from rwpipe.errors import InputError
from rwpipe.train.data import Example, encode_solution, pad_batch
from rwpipe.train.losses import (
    bradley_terry_loss,
    implicit_prm_loss,
    implicit_rewards,
    keep_from,
    pointwise_bce_loss,
    response_mask,
    step_bce_loss,
    window_token_logprobs,
)

KINDS = ("orm", "prm", "implicit_prm", "generative_prm")
CARD = "rwpipe-model.json"
REFERENCE = "reference"  # an implicit PRM's subdirectory holding pi_ref


def batch_tensors(model: Any, sequences: Sequence[Sequence[int]], pad_id: int,
                  device: torch.device, multiple: int = 1,
                  ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """`pad_batch` for `model` as (input_ids, attention_mask) tensors on `device`: the one
    batching of token sequences for the trainers, the scorers and rl. The rounding to
    `multiple` stops at the model's position limit (its config's `max_position_embeddings`)."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    ids, mask = pad_batch(sequences, pad_id, multiple, limit)
    return torch.tensor(ids, device=device), torch.tensor(mask, device=device)


@dataclass
class Backbone:
    """A model being trained or used to score, with what reading it needs."""

    kind: str
    model: Any
    tokenizer: Any
    device: torch.device
    step_tag: str = ""
    beta: float = 0.05
    reference: Any = None  # implicit_prm without LoRA: a frozen copy
    pad_multiple: int = PAD_TO_MULTIPLE_OF  # batch widths (`OptimConfig.pad_to_multiple_of`)

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.tokenizer.eos_token_id

    def tensors(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        return batch_tensors(self.model, sequences, self.pad_id, self.device, self.pad_multiple)

    # -- forward passes ------------------------------------------------------------------------

    def sequence_scores(self, examples: Sequence[Example]) -> torch.Tensor:
        """orm: one logit per example."""
        ids, mask = self.tensors([e.input_ids for e in examples])
        logits = self.model(input_ids=ids, attention_mask=mask).logits  # (B, seq, 1) or (B, 1)
        if logits.dim() == 3:  # token head: read the last real token
            last = mask.sum(-1) - 1
            logits = logits[torch.arange(len(examples)), last]
        return logits.squeeze(-1).float()

    def token_logits(self, examples: Sequence[Example]) -> torch.Tensor:
        """prm: one logit per position, (B, seq)."""
        ids, mask = self.tensors([e.input_ids for e in examples])
        return self.model(input_ids=ids, attention_mask=mask).logits.squeeze(-1).float()

    def _ref_context(self) -> contextlib.AbstractContextManager:
        model = self.model  # under DDP (multi-process training) the adapter is on its module
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        if self.reference is None and hasattr(model, "disable_adapter"):
            return model.disable_adapter()
        return contextlib.nullcontext()

    def _logps(self, examples: Sequence[Example]) -> tuple[torch.Tensor, ...]:
        """implicit_prm: log-probs of each next token under the model and the reference, and
        the mask of response tokens, all (B, seq-1): position t-1 is token t. Only response
        positions reach the lm_head (the others hold 0)."""
        ids, mask = self.tensors([e.input_ids for e in examples])
        start = _response_start(examples)
        logps = window_token_logprobs(self.model, ids, mask, start)
        with torch.no_grad(), self._ref_context():
            ref_model = self.reference if self.reference is not None else self.model
            ref = window_token_logprobs(ref_model, ids, mask, start)
        return logps, ref, _response_mask(logps, examples)

    def token_rewards(self, examples: Sequence[Example]) -> torch.Tensor:
        """implicit_prm: per-token beta*log(pi/pi_ref) on response tokens, (B, seq-1)."""
        logps, ref, response = self._logps(examples)
        return implicit_rewards(logps, ref, response, self.beta)

    # -- losses --------------------------------------------------------------------------------

    def loss(self, batch: Sequence[Any], objective: str) -> torch.Tensor:
        """The training loss of one micro-batch (examples, or (chosen, rejected) pairs)."""
        if objective == "bt":  # items: (chosen, rejected) or (chosen, rejected, margin)
            flat = [e for pair in batch for e in pair[:2]]
            scores = self.sequence_scores(flat)
            margins = [pair[2] if len(pair) > 2 else None for pair in batch]
            margin = None
            if any(m is not None for m in margins):
                margin = torch.tensor([m or 0.0 for m in margins], device=scores.device)
            return bradley_terry_loss(scores[0::2], scores[1::2], margin)
        if objective == "pointwise":
            scores = self.sequence_scores(batch)
            return pointwise_bce_loss(scores, torch.tensor([e.outcome for e in batch]))
        if objective == "step":
            logits = self.token_logits(batch)
            targets, mask = torch.zeros_like(logits), torch.zeros_like(logits)
            for b, e in enumerate(batch):
                for pos, t in zip(e.step_ends, e.step_targets, strict=True):
                    if t is not None:
                        targets[b, pos], mask[b, pos] = t, 1
            return step_bce_loss(logits, targets, mask)
        if objective == "sft":  # generative_prm: cross-entropy on the critique's tokens
            ids, mask = self.tensors([e.input_ids for e in batch])
            logps = window_token_logprobs(self.model, ids, mask, _response_start(batch))
            response = _response_mask(logps, batch)
            return -(logps * response).sum() / response.sum().clamp(min=1)
        if objective == "implicit":
            logps, ref, response = self._logps(batch)
            outcomes = torch.tensor([e.outcome for e in batch], device=logps.device)
            return implicit_prm_loss(logps, ref, response, outcomes, self.beta)
        raise ValueError(f"unknown objective {objective!r}")

    # -- scoring -------------------------------------------------------------------------------

    @torch.no_grad()
    def score(self, examples: Sequence[Example]) -> list[tuple[float, list[float]]]:
        """(outcome score, step scores) per example.

        orm: sigmoid(logit), no step scores. prm: sigmoid at each step end; the outcome score
        is the last step's (None when no step fit). implicit_prm: each step's summed implicit
        reward; the outcome score is sigmoid of the total (the model's P(correct)).
        generative_prm: P(correct) at each verdict position; the outcome score is the last's.
        """
        if self.kind == "orm":
            return [(float(s), []) for s in torch.sigmoid(self.sequence_scores(examples))]
        if self.kind == "prm":
            return _at_step_ends(torch.sigmoid(self.token_logits(examples)), examples)
        if self.kind == "generative_prm":
            return _at_step_ends(self._verdict_probs(examples), examples)
        rewards = self.token_rewards(examples)
        out = []
        for b, e in enumerate(examples):
            # token t's reward sits at position t-1: step j spans [end_{j-1}, end_j)
            bounds = [max(e.prompt_len - 1, 0), *e.step_ends]
            steps = [float(rewards[b, lo:hi].sum()) for lo, hi in itertools.pairwise(bounds)]
            out.append((float(torch.sigmoid(rewards[b].sum())), steps))
        return out

    def _verdict_probs(self, examples: Sequence[Example]) -> torch.Tensor:
        """generative_prm: P(correct) over the two verdict tokens at every position."""
        from rwpipe.critique import verdict_tokens

        good, bad = verdict_tokens(self.tokenizer)
        ids, mask = self.tensors([e.input_ids for e in examples])
        start = min([_response_start(examples), *(p for e in examples for p in e.step_ends)])
        kept = keep_from(ids, start)
        logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=kept).logits
        probs = logits[..., [good, bad]].float().softmax(-1)[..., 0]
        return torch.nn.functional.pad(probs, (ids.shape[1] - probs.shape[1], 0))

    def encode(
        self, prompt: str, steps: Sequence[str], max_length: int = 0, question: str = ""
    ) -> Example:
        """A solution as this model reads it: prompt + steps (step ends marked), or for a
        generative PRM the verification request of `question` and the critique judging every
        step correct (verdict positions marked)."""
        if self.kind == "generative_prm":
            from rwpipe.critique import encode_critique

            ids, prompt_len, ends = encode_critique(
                self.tokenizer, question, steps, [1] * len(steps), max_length
            )
            return Example(ids, prompt_len, ends)
        tag = self.step_tag if self.kind == "prm" else ""
        enc = encode_solution(self.tokenizer, prompt, steps, tag, max_length)
        return Example(enc.input_ids, enc.prompt_len, enc.step_ends)


def _response_start(examples: Sequence[Example]) -> int:
    """The first position whose next token is a response token in some example."""
    return max(min(e.prompt_len for e in examples) - 1, 0)


def _response_mask(logps: torch.Tensor, examples: Sequence[Example]) -> torch.Tensor:
    """1 where position t-1 holds a response token t, (B, seq-1) like `logps`."""
    spans = [(e.prompt_len, len(e.input_ids)) for e in examples]
    return response_mask(spans, logps.shape[1], device=logps.device).to(logps.dtype)


def _at_step_ends(
    probs: torch.Tensor, examples: Sequence[Example]
) -> list[tuple[float | None, list[float]]]:
    """(outcome, step scores) from per-position probabilities read at each example's step ends
    (a PRM's step tags, a generative PRM's verdicts); the outcome is the last step's, None when
    no step fit."""
    out = []
    for b, e in enumerate(examples):
        steps = [float(probs[b, p]) for p in e.step_ends]
        out.append((steps[-1] if steps else None, steps))
    return out


TASKS = {"orm": "SEQ_CLS", "prm": "TOKEN_CLS", "implicit_prm": "CAUSAL_LM",
         "generative_prm": "CAUSAL_LM", "policy": "CAUSAL_LM"}  # fmt: skip


def load_model(
    model_dir: str | Path,
    kind: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    lora: Any = None,
    gradient_checkpointing: bool = False,
    reference: bool = False,
) -> tuple[Any, Any, Any]:
    """The one loader of trainable models: reward backbones (`KINDS`) and the RL `policy`.

    Args:
        model_dir: a transformers directory.
        kind: a key of `TASKS`: the head (sequence, token classification or causal LM).
        device, dtype: where and how the weights live.
        lora: the `lora` params; the model is LoRA-wrapped when `lora.enabled`.
        gradient_checkpointing: trade compute for activation memory.
        reference: whether a reference model is needed; without LoRA a frozen copy is loaded
            (with LoRA the reference is the same model with its adapter off).

    Returns:
        (tokenizer, model on `device`, the frozen reference copy or None).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model = _pretrained(model_dir, kind, dtype, pad)
    model.config.pad_token_id = pad
    frozen = None
    if reference and not (lora and lora.enabled):
        frozen = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
        frozen.requires_grad_(False)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora and lora.enabled:
        model = _with_lora(model, kind, lora)
    return tokenizer, model.to(device), frozen


def _pretrained(model_dir: str | Path, kind: str, dtype: torch.dtype, pad: int) -> Any:
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    if kind == "orm":
        return AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=1, dtype=dtype, pad_token_id=pad
        )
    if kind == "prm":
        return AutoModelForTokenClassification.from_pretrained(model_dir, num_labels=1, dtype=dtype)
    if kind not in TASKS:
        raise ValueError(f"unknown model kind {kind!r}")
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)


def _with_lora(model: Any, kind: str, lora: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    return get_peft_model(
        model,
        LoraConfig(
            task_type=TASKS[kind],
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules),
            modules_to_save=["score"] if kind in ("orm", "prm") else None,
        ),
    )


def load_backbone(
    model_dir: str | Path,
    kind: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    lora: Any = None,
    step_tag: str = "",
    beta: float = 0.05,
    gradient_checkpointing: bool = False,
    pad_multiple: int = PAD_TO_MULTIPLE_OF,
) -> Backbone:
    """Load `model_dir` with the head `kind` needs, LoRA-wrapped when `lora.enabled`."""
    tokenizer, model, reference = load_model(
        model_dir, kind, device=device, dtype=dtype, lora=lora,
        gradient_checkpointing=gradient_checkpointing, reference=kind == "implicit_prm",
    )  # fmt: skip
    return Backbone(kind, model, tokenizer, device, step_tag, beta, reference, pad_multiple)


def save_model_dir(model: Any, tokenizer: Any, out_dir: Path, files: dict[str, str]) -> None:
    """The one atomic model save: `model` (LoRA merged in) and `tokenizer` as a plain
    transformers directory, plus `files` (name -> text), replacing `out_dir` in one step."""
    with atomic_path(out_dir) as tmp:
        _write_model(model, tokenizer, tmp, files)


def _write_model(model: Any, tokenizer: Any, out: Path, files: dict[str, str]) -> None:
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    for name, text in files.items():
        (out / name).write_text(text)


def save_backbone(backbone: Backbone, out_dir: Path, card: dict[str, Any]) -> None:
    """Write a plain transformers directory (LoRA merged in) plus rwpipe's model card,
    atomically. An implicit PRM also gets its reference model in `reference/` (weights and
    config), its sha256 in the card's `reference`."""
    info = {"kind": backbone.kind, "step_tag": backbone.step_tag, "beta": backbone.beta} | card
    with atomic_path(out_dir) as tmp:
        if backbone.kind == "implicit_prm":
            reference = _reference_model(backbone)  # before the merge changes the weights
            reference.save_pretrained(tmp / REFERENCE, safe_serialization=True)
            info["reference"] = {"path": REFERENCE, "sha256": weights_digest(tmp / REFERENCE)}
        text = json.dumps(info, indent=2, sort_keys=True, default=str)
        files = {CARD: text + "\n", "README.md": _model_card(info, text)}
        _write_model(backbone.model, backbone.tokenizer, tmp, files)


def _reference_model(backbone: Backbone) -> Any:
    """pi_ref as a plain model: the frozen copy, else the LoRA model's base weights."""
    if backbone.reference is not None:
        return backbone.reference
    if not hasattr(backbone.model, "disable_adapter"):
        raise ValueError("an implicit PRM needs a reference: a frozen copy or a LoRA adapter")
    # unload() strips the adapter without merging it, in place: do it on a copy
    return copy.deepcopy(backbone.model).unload()


def weights_digest(model_dir: Path) -> str:
    """sha256 of a model directory's weight files (names and bytes), in name order."""
    h = hashlib.sha256()
    for f in sorted(model_dir.glob("*.safetensors")):
        h.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()


def read_card(model_dir: str | Path) -> dict[str, Any] | None:
    """The model card `rwpipe-model.json` of `model_dir` (None when there is none).

    Raises:
        InputError: the card is not a JSON object.
    """
    path = Path(model_dir) / CARD
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(card, dict):
        raise InputError(f"{path}: not a JSON object")
    return card


def reference_dir(model_dir: str | Path, card: dict[str, Any]) -> Path:
    """A saved implicit PRM's reference model directory.

    Raises:
        InputError: the card names no reference (saved by an older rwpipe, whose implicit PRMs
            cannot be scored: retrain), or the reference directory is missing.
    """
    ref = card.get("reference")
    if not isinstance(ref, dict) or not ref.get("path"):
        raise InputError(
            f"{Path(model_dir) / CARD}: an implicit PRM saved without its reference model "
            "(by an older rwpipe), so it cannot be scored; retrain it with `rwpipe train-prm`"
        )
    path = Path(model_dir) / ref["path"]
    if not (path / "config.json").is_file():
        raise InputError(
            f"{path}: the implicit PRM's reference model is missing (it must travel with "
            f"{Path(model_dir).name}/)"
        )
    return path


def load_saved(model_dir: str | Path, *, device: torch.device, dtype: torch.dtype) -> Backbone:
    """Load a reward model saved by `save_backbone`, for scoring (eval mode).

    An implicit PRM loads pi from the directory and pi_ref from its `reference/`, whose
    weights must be the ones saved with it (sha256 in the card; checking it reads the
    reference's weight files once more).

    Raises:
        InputError: no card, a kind that is not a reward model, or an implicit PRM whose
            reference is missing or changed; one line naming the path.
    """
    from transformers import AutoModelForCausalLM

    card = read_card(model_dir)
    kind = (card or {}).get("kind")
    if kind not in KINDS:
        raise InputError(f"{model_dir}: not an rwpipe reward model ({CARD} kind {kind!r})")
    ref_model = None
    if kind == "implicit_prm":
        ref_dir = reference_dir(model_dir, card)
        if weights_digest(ref_dir) != card["reference"].get("sha256"):
            raise InputError(
                f"{ref_dir}: the reference model's weights differ from those saved with the "
                "implicit PRM (sha256 in its card); restore them or retrain"
            )
        ref_model = AutoModelForCausalLM.from_pretrained(ref_dir, dtype=dtype).to(device).eval()
        ref_model.requires_grad_(False)
    tokenizer, model, _ = load_model(model_dir, kind, device=device, dtype=dtype)
    backbone = Backbone(kind, model, tokenizer, device, card.get("step_tag", ""),
                        card.get("beta", 0.05), ref_model)  # fmt: skip
    backbone.model.eval()
    return backbone


READING = {
    "orm": "AutoModelForSequenceClassification; sigmoid(logit) = P(solution correct).",
    "prm": "AutoModelForTokenClassification (1 label); sigmoid(logit) at the last token of each "
    "step (after appending the step tag) = P(step correct).",
    "implicit_prm": "AutoModelForCausalLM; step reward = beta * sum over the step's tokens of "
    "log p(token) - log p_ref(token), p = this directory's weights, p_ref = the reference model "
    "in `reference/` (the base model's weights as training saw them; keep it with this "
    "directory: rwpipe refuses to score when it is missing or its sha256 differs from the "
    "card's `reference.sha256`).",
    "generative_prm": "AutoModelForCausalLM that writes a step-by-step verification critique "
    "(rwpipe.critique: `Step k: The step is \\boxed{correct}.` per step, up to the first "
    "incorrect one, then `The first incorrect step is \\boxed{k}.`); P(step correct) = the "
    "probability of `correct` against `incorrect` at step k's verdict, teacher-forced with the "
    "earlier steps judged correct. Or sample critiques and parse them.",
}


def _model_card(info: dict[str, Any], text: str) -> str:
    """A Hugging Face model card: what the model is, how to read it, what produced it."""
    metrics = info.get("metrics") or {}
    rows = "\n".join(
        f"| {k} | {v} |" for k, v in sorted(metrics.items()) if isinstance(v, int | float)
    )
    return (
        f"---\nlibrary_name: transformers\ntags: [rwpipe, reward-model, {info['kind']}]\n---\n\n"
        f"# {info['kind']} trained by rwpipe\n\n"
        f"Base model: `{info.get('base_model', '?')}`. "
        f"Training data: `{info.get('data', '?')}`.\n\n"
        f"How to read it: {READING[info['kind']]} Or: `rwpipe score ROLLOUTS THIS_DIR OUT`.\n\n"
        f"## Held-out metrics\n\n| metric | value |\n| --- | --- |\n{rows}\n\n"
        f"## Everything rwpipe recorded\n\n```json\n{text}\n```\n"
    )


def trainable_state(model: Any) -> Iterator[tuple[str, torch.Tensor]]:
    return ((n, p) for n, p in model.named_parameters() if p.requires_grad)
