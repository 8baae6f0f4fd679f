"""`rwpipe rl`: on-policy GRPO-family fine-tuning of the policy with verifiable, ORM, PRM and
online implicit-PRM (PRIME) rewards.

One step:

1. take `prompts_per_step` training problems (a seeded permutation per epoch, so the prompts
   of step s depend only on the seed and s);
2. sample a group of `group_size` completions per prompt through the Generator (vLLM by
   default; the engine gets the current weights, LoRA merged in, before every step but the
   first);
3. score them: math-verify outcome (1/0), ORM probability, PRM step scores, implicit-PRM step
   rewards, minus a length penalty; PRM rewards become per-step returns by the credit rule
   (`rwpipe.rl.advantages`);
4. advantages: the outcome estimator over each group, plus the group-baselined process
   advantages, per token;
5. `ppo_epochs` passes of the clipped surrogate (+ k3 KL to the reference when kl_coef > 0)
   over micro-batches, one optimizer step per pass; with PRIME the implicit PRM is first
   updated on the batch's outcome labels.

Tokens are the engine's own sampled ids (no re-tokenisation): the trainer computes log-probs
of exactly what was sampled. Checkpoints (every `checkpoint_every` steps and at the end) hold
the trainable weights, optimizer and scheduler states, RNG states and the history; the step's
sampling seed is `stable_seed(seed, "rl", step)`, so a run killed and resumed continues the
same curve (bit-exact with the transformers backend; vLLM's batched kernels may differ in
the last bits).
"""

import bisect
import json
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from rwpipe.backends import Completion, Generator, SamplingParams
from rwpipe.config import RLConfig
from rwpipe.errors import InputError
from rwpipe.rl.advantages import (
    entropy_from_logits,
    outcome_advantages,
    policy_loss,
    process_advantages,
    step_returns,
)
from rwpipe.runtime import stable_seed
from rwpipe.train.loop import matching_checkpoint, restore_rng_states, rng_states

POLICY_CARD = "rwpipe-policy.json"


@dataclass
class RLState:
    step: int = 0  # optimizer steps (RL iterations) done
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per step
    tokens: int = 0  # generated tokens
    seconds: float = 0.0


@dataclass
class DataParallel:
    """This process's place in a data-parallel run (`accelerate launch` or `torchrun`).

    Each process samples and scores `prompts_per_step / world` of the step's prompts with its
    own engine (TRL's "colocate" pattern), and the gradients are averaged across processes
    before every optimizer step, so the replicas stay identical. A single process is the
    default (world 1: nothing is communicated).
    """

    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> "DataParallel":
        """World 1 unless launched with WORLD_SIZE > 1; then accelerate sets up the group."""
        import os

        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())  # gloo on CPU, nccl on GPUs
        if state.num_processes <= 1:
            raise RuntimeError(f"WORLD_SIZE is {os.environ['WORLD_SIZE']} but no process group")
        return cls(state.process_index, state.num_processes)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, picked: list[int]) -> list[int]:
        """This process's prompts of the step."""
        return picked[self.rank :: self.world]

    def average_grads(self, params: Sequence[torch.nn.Parameter]) -> None:
        """All-reduce the accumulated gradients to their mean (a process with no sequence this
        step contributes zeros, and still takes part)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(self.world)

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each statistic across processes (equal shares: a plain mean)."""
        if self.world == 1:
            return values
        import torch.distributed as dist

        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist(), strict=True)}

    def total(self, value: int) -> int:
        return int(round(self.mean({"v": value})["v"] * self.world))

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


@dataclass
class Policy:
    """The policy being trained, its tokenizer, and how to get reference log-probs."""

    model: Any
    tokenizer: Any
    device: torch.device
    reference: Any = None  # full fine-tuning with KL: a frozen copy

    def logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, attention_mask=mask).logits

    @torch.no_grad()
    def reference_logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.reference is not None:
            return self.reference(input_ids=ids, attention_mask=mask).logits
        with self.model.disable_adapter():
            return self.model(input_ids=ids, attention_mask=mask).logits

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
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    reference = None
    if cfg.kl_coef > 0 and not cfg.lora.enabled:
        reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
        reference.requires_grad_(False)
    if cfg.optim.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        lora = cfg.lora
        model = get_peft_model(
            model,
            LoraConfig(task_type="CAUSAL_LM", r=lora.r, lora_alpha=lora.alpha,
                       lora_dropout=lora.dropout, target_modules=list(lora.target_modules)),
        )  # fmt: skip
    return Policy(model.to(device), tokenizer, device, reference)


# -- data ----------------------------------------------------------------------------------------


def step_prompts(num_problems: int, per_step: int, step: int, seed: int) -> list[int]:
    """Indices of the problems of RL step `step`: consecutive slices of seeded per-epoch
    permutations (an epoch's tail is followed by the next epoch's head)."""
    out, position = [], step * per_step
    while len(out) < per_step:
        epoch, offset = divmod(position, num_problems)
        order = list(range(num_problems))
        random.Random(stable_seed(seed, "rl-epoch", epoch)).shuffle(order)
        out.append(order[offset])
        position += 1
    return out


def token_steps(tokenizer: Any, token_ids: Sequence[int], steps: Sequence[str]) -> list[int]:
    """The step index of every generated token (steps re-join to the decoded text).

    Token k belongs to the first step whose end (in characters) lies beyond the text decoded
    from tokens [0, k); tokens after the text (EOS, a stop string) belong to the last step.
    """
    if not steps:
        return [0] * len(token_ids)
    ends, total = [], 0
    for s in steps:
        total += len(s)
        ends.append(total)

    def decoded_len(k: int) -> int:
        return len(tokenizer.decode(token_ids[:k], skip_special_tokens=True))

    # first token index whose prefix reaches each step end (prefix lengths are monotone)
    cuts = []
    for end in ends[:-1]:
        lo, hi = 0, len(token_ids)
        while lo < hi:
            mid = (lo + hi) // 2
            if decoded_len(mid) >= end:
                hi = mid
            else:
                lo = mid + 1
        cuts.append(lo)
    return [bisect.bisect_right(cuts, k) for k in range(len(token_ids))]


# -- rewards -------------------------------------------------------------------------------------


@dataclass
class Scored:
    """Rewards of one step's completions, flat in (prompt, sample) order."""

    correct: list[float]
    outcome: list[float]  # combined scalar reward per completion
    step_rewards: list[list[float]]  # combined per-step process rewards (may be empty lists)
    extras: dict[str, float]


def score_batch(
    cfg: RLConfig,
    questions: Sequence[str],
    golds: Sequence[str],
    prompts: Sequence[str],
    completions: Sequence[Completion],
    steps: Sequence[Sequence[str]],
    *,
    verifier: Any,
    orm: Any = None,
    prm: Any = None,
    implicit: Any = None,
) -> Scored:
    """Every reward term of `cfg.rewards` for a flat batch of completions."""
    from rwpipe.score import Solution

    w = cfg.rewards
    verdicts = verifier.check(list(golds), [c.text for c in completions])
    correct = [1.0 if v.verdict == "correct" else 0.0 for v in verdicts]
    lengths = [len(c.token_ids) for c in completions]
    outcome = [
        w.verifiable * c - w.length_penalty * n / cfg.sampling.max_new_tokens
        for c, n in zip(correct, lengths, strict=True)
    ]
    extras: dict[str, float] = {}
    solutions = [Solution(q, p, s) for q, p, s in zip(questions, prompts, steps, strict=True)]
    if orm is not None and w.orm:
        got = [s for s, _ in orm.score(solutions)]
        extras["orm_score"] = float(np.mean([g or 0.0 for g in got]))
        outcome = [o + w.orm * (g or 0.0) for o, g in zip(outcome, got, strict=True)]
    step_rewards: list[list[float]] = [[0.0] * len(s) for s in steps]
    if prm is not None and w.prm:
        got = [st for _, st in prm.score(solutions)]
        flat = [x for st in got for x in st]
        extras["prm_step_score"] = float(np.mean(flat)) if flat else 0.0
        step_rewards = _add(step_rewards, got, w.prm)
    if implicit is not None and w.implicit_prm:
        examples = [implicit.encode(s.prompt, s.steps, cfg.optim.max_length) for s in solutions]
        size = cfg.optim.batch_size
        got = [st for i in range(0, len(examples), size)
               for _, st in implicit.score(examples[i : i + size])]  # fmt: skip
        flat = [x for st in got for x in st]
        extras["implicit_step_reward"] = float(np.mean(flat)) if flat else 0.0
        step_rewards = _add(step_rewards, got, w.implicit_prm)
    return Scored(correct, outcome, step_rewards, extras)


def _add(acc: list[list[float]], got: Sequence[Sequence[float]], weight: float) -> list:
    out = []
    for a, g in zip(acc, got, strict=True):
        # a reward model that dropped trailing steps (max_length) leaves them at 0
        out.append([x + weight * (g[i] if i < len(g) else 0.0) for i, x in enumerate(a)])
    return out


def token_advantages(cfg: RLConfig, scored: Scored, group: int,
                     token_step: Sequence[Sequence[int]]) -> list[list[float]]:  # fmt: skip
    """Per-token advantages: the group outcome advantage plus the process advantage."""
    rewards = torch.tensor(scored.outcome).view(-1, group)
    outcome_adv = outcome_advantages(rewards, cfg.estimator).flatten().tolist()
    use_process = (cfg.rewards.prm or cfg.rewards.implicit_prm) and any(scored.step_rewards)
    process: list[list[float]] = [[] for _ in outcome_adv]
    if use_process:
        for g in range(len(outcome_adv) // group):
            block = range(g * group, (g + 1) * group)
            returns = [
                step_returns(scored.step_rewards[i], cfg.credit, cfg.clip_eta) for i in block
            ]
            for i, adv in zip(block, process_advantages(returns), strict=True):
                process[i] = adv
    out = []
    for i, steps_of in enumerate(token_step):
        adv = process[i]
        out.append([outcome_adv[i] + (adv[min(k, len(adv) - 1)] if adv else 0.0)
                    for k in steps_of])  # fmt: skip
    return out


# -- the loop ------------------------------------------------------------------------------------


class RLCheckpointer:
    """Atomic checkpoints in `directory/ckpt`: trainable weights of each named model, the
    optimizer and scheduler states, RNG states and the run state."""

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.dir, self.fingerprint, self.path = directory, fingerprint, directory / "ckpt"

    def save(self, models: dict[str, Any], optims: dict[str, Any], state: RLState) -> None:
        from safetensors.torch import save_file

        tmp = self.dir / "ckpt.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, model in models.items():
            weights = {
                n: p.detach().cpu().contiguous()
                for n, p in model.named_parameters() if p.requires_grad
            }  # fmt: skip
            save_file(weights, str(tmp / f"{name}.safetensors"))
        blob = {name: o.state_dict() for name, o in optims.items()}
        blob["rng"] = rng_states()
        torch.save(blob, tmp / "optim.pt")
        (tmp / "state.json").write_text(
            json.dumps({"fingerprint": self.fingerprint, "state": asdict(state)})
        )
        old = self.dir / "ckpt.old"
        if self.path.exists():
            self.path.rename(old)
        tmp.rename(self.path)
        shutil.rmtree(old, ignore_errors=True)

    def load(self, models: dict[str, Any], optims: dict[str, Any]) -> RLState | None:
        from safetensors.torch import load_file

        meta = matching_checkpoint(self.path, self.fingerprint)
        if meta is None:
            return None
        for name, model in models.items():
            params = dict(model.named_parameters())
            with torch.no_grad():
                for n, value in load_file(str(self.path / f"{name}.safetensors")).items():
                    params[n].copy_(value)
        blob = torch.load(self.path / "optim.pt", weights_only=False)
        for name, o in optims.items():
            o.load_state_dict(blob[name])
        restore_rng_states(blob["rng"])
        return RLState(**meta["state"])


def _batch_tensors(sequences: Sequence[Sequence[int]], pad: int, device: torch.device):
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for b, s in enumerate(sequences):
        ids[b, : len(s)] = torch.tensor(s)
        mask[b, : len(s)] = 1
    return ids.to(device), mask.to(device)


def _logps(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    from rwpipe.train.losses import token_logprobs

    return token_logprobs(logits, ids)


def train_step(
    policy: Policy,
    optimizer: Any,
    scheduler: Any,
    cfg: RLConfig,
    prompt_ids: Sequence[Sequence[int]],
    completions: Sequence[Completion],
    advantages: Sequence[Sequence[float]],
    dp: DataParallel | None = None,
) -> dict[str, float]:
    """`cfg.ppo_epochs` clipped-surrogate updates on one batch; returns averaged statistics.
    Under data parallelism (`dp`), gradients are averaged across processes before each step."""
    dp = dp or DataParallel()
    pad = policy.tokenizer.pad_token_id
    pad = pad if pad is not None else policy.tokenizer.eos_token_id
    items = [
        (list(p) + list(c.token_ids), len(p), a)
        for p, c, a in zip(prompt_ids, completions, advantages, strict=True)
        if c.token_ids
    ]
    if not items and dp.world == 1:
        return {"loss": 0.0, "clip_fraction": 0.0, "kl": 0.0, "entropy": 0.0, "grad_norm": 0.0}
    mb = cfg.optim.batch_size
    micro = [items[i : i + mb] for i in range(0, len(items), mb)]
    total_seqs = len(items)
    total_tokens = max(1, sum(len(a) for _, _, a in items))

    def tensors(batch):
        ids, mask = _batch_tensors([s for s, _, _ in batch], pad, policy.device)
        resp = torch.zeros((len(batch), ids.shape[1] - 1), device=policy.device)
        adv = torch.zeros_like(resp)
        for b, (seq, plen, a) in enumerate(batch):
            resp[b, plen - 1 : len(seq) - 1] = 1
            adv[b, plen - 1 : len(seq) - 1] = torch.tensor(a, device=policy.device)
        return ids, mask, resp, adv

    old, ref = [], []
    need_old = cfg.ppo_epochs > 1
    with torch.no_grad():
        for batch in micro:
            ids, mask, _, _ = tensors(batch)
            if need_old:
                old.append(_logps(policy.logits(ids, mask), ids))
            if cfg.kl_coef > 0:
                ref.append(_logps(policy.reference_logits(ids, mask), ids))
    params = [p for p in policy.model.parameters() if p.requires_grad]
    sums = {"loss": 0.0, "clip_fraction": 0.0, "kl": 0.0, "entropy": 0.0, "grad_norm": 0.0}
    policy.model.train()
    for _ in range(cfg.ppo_epochs):
        for j, batch in enumerate(micro):
            ids, mask, resp, adv = tensors(batch)
            logits = policy.logits(ids, mask)
            logps = _logps(logits, ids)
            old_logps = old[j] if need_old else logps.detach()
            loss, stats = policy_loss(
                logps, old_logps, adv, resp, clip_low=cfg.clip_low, clip_high=cfg.clip_high,
                agg=cfg.loss_agg, max_tokens=cfg.sampling.max_new_tokens,
                ref_logps=ref[j] if ref else None, kl_coef=cfg.kl_coef,
            )  # fmt: skip
            # exact batch-level normalisation across micro-batches
            share = resp.sum().item() / total_tokens if cfg.loss_agg == "token_mean" else (
                len(batch) / total_seqs)  # fmt: skip
            (loss * share).backward()
            with torch.no_grad():
                ent = entropy_from_logits(logits[:, :-1].detach())
                stats["entropy"] = float((ent * resp).sum() / resp.sum().clamp(min=1))
            sums["loss"] += float(loss.detach()) * share
            for k in ("clip_fraction", "kl", "entropy"):
                sums[k] += stats[k] * share
        dp.average_grads(params)
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        sums["grad_norm"] += float(norm)
    policy.model.eval()
    return {k: v / cfg.ppo_epochs for k, v in sums.items()}


def update_implicit_prm(implicit: Any, optimizer: Any, examples: Sequence[Any],
                        batch_size: int, max_grad_norm: float,
                        dp: DataParallel | None = None) -> float:  # fmt: skip
    """One PRIME update: cross-entropy of the implicit reward on the batch's outcome labels."""
    implicit.model.train()
    params = [p for p in implicit.model.parameters() if p.requires_grad]
    total = 0.0
    for i in range(0, len(examples), batch_size):
        batch = examples[i : i + batch_size]
        loss = implicit.loss(batch, "implicit") * len(batch) / len(examples)
        loss.backward()
        total += float(loss.detach())
    (dp or DataParallel()).average_grads(params)
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    implicit.model.eval()
    return total


def run_rl(
    problems: pa.Table,
    policy: Policy,
    generator: Generator,
    cfg: RLConfig,
    *,
    seed: int,
    checkpointer: RLCheckpointer,
    split_steps: Callable[[str], list[str]],
    verifier: Any,
    orm: Any = None,
    prm: Any = None,
    implicit: Any = None,
    advance: Callable[[int, int], None] | None = None,
    stop_after_steps: int | None = None,
    dp: DataParallel | None = None,
) -> RLState:
    """Run `cfg.steps` RL steps on `problems` (resuming a matching checkpoint).

    Args:
        problems: the training problems (question, answer columns).
        policy: the model being trained (see `load_policy_model`).
        generator: the sampling engine; it must implement `update_weights`.
        cfg: the rl section.
        seed: the base seed.
        checkpointer: where checkpoints go.
        split_steps: the step rule (`base.step_split`).
        verifier: a `VerifierPool`.
        orm, prm: `rwpipe.score.Scorer`s when their reward weights are non-zero.
        implicit: the PRIME implicit PRM (`rwpipe.train.backbone.Backbone`), or None.
        advance: progress callback (steps, tokens).
        stop_after_steps: stop after this many steps (checkpointed); for tests of resume.
        dp: this process's place in a data-parallel run (default: a single process); every
            process gets the same history, rank 0 writes the checkpoints.
    """
    dp = dp or DataParallel()
    if cfg.prompts_per_step % dp.world:
        raise InputError(
            f"rl.prompts_per_step {cfg.prompts_per_step} is not divisible by the "
            f"{dp.world} processes"
        )
    if problems.num_rows == 0:
        raise InputError("no training problems for rl")
    questions = problems["question"].to_pylist()
    golds = problems["answer"].to_pylist()
    params = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    warmup = int(cfg.optim.warmup_ratio * cfg.steps * cfg.ppo_epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
    )
    models: dict[str, Any] = {"policy": policy.model}
    optims: dict[str, Any] = {"optimizer": optimizer, "scheduler": scheduler}
    prm_optimizer = None
    if implicit is not None:
        prm_params = [p for p in implicit.model.parameters() if p.requires_grad]
        prm_optimizer = torch.optim.AdamW(prm_params, lr=cfg.rewards.implicit_lr)
        models["implicit_prm"] = implicit.model
        optims["implicit_optimizer"] = prm_optimizer
    torch.manual_seed(seed)
    random.seed(seed)
    state = checkpointer.load(models, optims) or RLState()
    synced = state.step == 0  # a fresh engine already holds the base weights
    while state.step < cfg.steps:
        start = time.perf_counter()
        if not synced:
            generator.update_weights(policy.merged_state_dict())
        picked = dp.share(step_prompts(len(questions), cfg.prompts_per_step, state.step, seed))
        chat = [
            generator.chat_prompt(cfg.prompt_template.replace("{question}", questions[i]),
                                  cfg.system_prompt)
            for i in picked
        ]  # fmt: skip
        s = cfg.sampling
        params_ = SamplingParams(
            n=cfg.group_size, temperature=s.temperature, top_p=s.top_p,
            max_new_tokens=s.max_new_tokens, stop=tuple(s.stop),
            seed=stable_seed(seed, "rl", state.step, *([dp.rank] if dp.rank else [])),
            logprobs=False,
        )  # fmt: skip
        gen_start = time.perf_counter()
        outputs = generator.generate(chat, params_)
        gen_seconds = time.perf_counter() - gen_start
        flat = [c for group in outputs for c in group]
        rep = cfg.group_size
        f_questions = [questions[i] for i in picked for _ in range(rep)]
        f_golds = [golds[i] for i in picked for _ in range(rep)]
        f_prompts = [p for p in chat for _ in range(rep)]
        steps = [split_steps(c.text) for c in flat]
        record: dict[str, Any] = {}
        if implicit is not None:
            # PRIME: update the implicit PRM on this batch's outcome labels, then score with it
            verdicts = verifier.check(f_golds, [c.text for c in flat])
            examples = []
            for p, st, v in zip(f_prompts, steps, verdicts, strict=True):
                e = implicit.encode(p, st, cfg.optim.max_length)
                e.outcome = 1.0 if v.verdict == "correct" else 0.0
                examples.append(e)
            record["implicit_prm_loss"] = update_implicit_prm(
                implicit,
                prm_optimizer,
                examples,
                cfg.optim.batch_size,
                cfg.optim.max_grad_norm,
                dp,
            )
        scored = score_batch(cfg, f_questions, f_golds, f_prompts, flat, steps,
                             verifier=verifier, orm=orm, prm=prm, implicit=implicit)  # fmt: skip
        token_step = [token_steps(policy.tokenizer, c.token_ids, st)
                      for c, st in zip(flat, steps, strict=True)]  # fmt: skip
        adv = token_advantages(cfg, scored, rep, token_step)
        prompt_ids = [policy.tokenizer.encode(p, add_special_tokens=False) for p in f_prompts]
        stats = train_step(policy, optimizer, scheduler, cfg, prompt_ids, flat, adv, dp)
        synced = False
        tokens = dp.total(sum(len(c.token_ids) for c in flat))
        state.step += 1
        state.tokens += tokens
        seconds = time.perf_counter() - start
        state.seconds += seconds
        shared = dp.mean({
            "reward": float(np.mean(scored.outcome)),
            "accuracy": float(np.mean(scored.correct)),
            "length": float(np.mean([len(c.token_ids) for c in flat])),
            "steps_per_solution": float(np.mean([len(st) for st in steps])),
            **stats, **scored.extras, **record,
        })  # fmt: skip
        record = {
            "step": state.step,
            **{k: round(v, 6) for k, v in shared.items()},
            "lr": scheduler.get_last_lr()[0],
            "generate_seconds": round(gen_seconds, 3),
            "seconds": round(seconds, 3),
        }
        state.history.append({k: round(v, 6) if isinstance(v, float) else v
                              for k, v in record.items()})  # fmt: skip
        if advance:
            advance(1, tokens)
        last = state.step == cfg.steps or state.step == stop_after_steps
        if last or state.step % cfg.optim.checkpoint_every == 0:
            if dp.main:
                checkpointer.save(models, optims, state)
            dp.barrier()
        if state.step == stop_after_steps:
            break
    return state


def summarize(state: RLState, window: int = 3) -> dict[str, Any]:
    """First and last steps' means (over `window` steps) of the main curves, and totals."""
    hist = state.history
    out: dict[str, Any] = {"steps": state.step, "generated_tokens": state.tokens,
                           "seconds": round(state.seconds, 1)}  # fmt: skip
    if not hist:
        return out
    w = max(1, min(window, len(hist) // 2 or 1))
    for key in (
        "reward",
        "accuracy",
        "length",
        "steps_per_solution",
        "kl",
        "entropy",
        "clip_fraction",
        "orm_score",
        "prm_step_score",
        "implicit_step_reward",
    ):
        first = [h[key] for h in hist[:w] if key in h]
        last = [h[key] for h in hist[-w:] if key in h]
        if first and last:
            out[f"{key}_first"] = round(float(np.mean(first)), 4)
            out[f"{key}_last"] = round(float(np.mean(last)), 4)
    gen = sum(h.get("generate_seconds", 0.0) for h in hist)
    out["generate_fraction"] = round(gen / max(state.seconds, 1e-9), 3)
    return out


def save_policy(policy: Policy, out_dir: Path, card: dict[str, Any]) -> None:
    """Write the trained policy (LoRA merged) as a transformers directory, atomically."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = policy.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(tmp, safe_serialization=True)
    policy.tokenizer.save_pretrained(tmp)
    text = json.dumps(card, indent=2, sort_keys=True, default=str)
    (tmp / POLICY_CARD).write_text(text + "\n")
    (tmp / "README.md").write_text(
        "---\nlibrary_name: transformers\ntags: [rwpipe, rl, grpo]\n---\n\n"
        f"# Policy fine-tuned by `rwpipe rl`\n\nBase: `{card.get('base_model')}`.\n\n"
        f"```json\n{text}\n```\n"
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
