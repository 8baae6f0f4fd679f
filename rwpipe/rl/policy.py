"""The policy being trained: its forward passes, the reference, the merged weights handed to
the engine, and the final save. Loading and saving go through the reward models' code
(`rwpipe.train.backbone.load_model`, `save_model_dir`)."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rwpipe.config import RLConfig
from rwpipe.train.backbone import load_model, save_model_dir
from rwpipe.train.losses import keep_from

POLICY_CARD = "rwpipe-policy.json"


@dataclass
class Policy:
    """The policy being trained, its tokenizer, and how to get reference log-probs."""

    model: Any
    tokenizer: Any
    device: torch.device
    reference: Any = None  # full fine-tuning with KL: a frozen copy

    def logits(self, ids: torch.Tensor, mask: torch.Tensor, start: int = 0) -> torch.Tensor:
        """(B, seq - start, vocab): the logits of positions start .. seq - 1. The lm_head and
        everything over the vocabulary after it run on those positions only."""
        kept = keep_from(ids, start)
        return self.model(input_ids=ids, attention_mask=mask, logits_to_keep=kept).logits

    @torch.no_grad()
    def reference_logits(self, ids: torch.Tensor, mask: torch.Tensor,
                         start: int = 0) -> torch.Tensor:  # fmt: skip
        kwargs = {"input_ids": ids, "attention_mask": mask, "logits_to_keep": keep_from(ids, start)}
        if self.reference is not None:
            return self.reference(**kwargs).logits
        with self.model.disable_adapter():
            return self.model(**kwargs).logits

    @torch.no_grad()
    def merged_state_dict(self) -> dict[str, torch.Tensor]:
        """Transformers-named weights with any LoRA adapter merged in (for the engine)."""
        model = self.model
        if not hasattr(model, "merge_adapter"):
            return {k: v.detach() for k, v in model.state_dict().items()}
        model.merge_adapter()
        try:
            out = {}
            for name, value in model.get_base_model().state_dict().items():
                if "lora_" in name or "modules_to_save" in name:
                    continue
                out[name.replace(".base_layer.", ".")] = value.detach().clone()
            return out
        finally:
            model.unmerge_adapter()


def load_policy_model(model_dir: str | Path, cfg: RLConfig, device: torch.device,
                      dtype: torch.dtype) -> Policy:  # fmt: skip
    """The causal LM at `model_dir`, LoRA-wrapped per `cfg.lora`, with a frozen reference copy
    when the KL term needs one and LoRA is off."""
    tokenizer, model, reference = load_model(
        model_dir, "policy", device=device, dtype=dtype, lora=cfg.lora,
        gradient_checkpointing=cfg.optim.gradient_checkpointing, reference=cfg.kl_coef > 0,
    )  # fmt: skip
    return Policy(model, tokenizer, device, reference)


def save_policy(policy: Policy, out_dir: Path, card: dict[str, Any]) -> None:
    """Write the trained policy (LoRA merged) as a transformers directory, atomically."""
    text = json.dumps(card, indent=2, sort_keys=True, default=str)
    readme = (
        "---\nlibrary_name: transformers\ntags: [rwpipe, rl, grpo]\n---\n\n"
        f"# Policy fine-tuned by `rwpipe rl`\n\nBase: `{card.get('base_model')}`.\n\n"
        f"```json\n{text}\n```\n"
    )
    files = {POLICY_CARD: text + "\n", "README.md": readme}
    save_model_dir(policy.model, policy.tokenizer, out_dir, files)
