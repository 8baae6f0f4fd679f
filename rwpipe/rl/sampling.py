"""What each RL step samples: its prompts (`step_prompts`) and a group of completions per
prompt through the engine (`sample_batch`), flattened in (prompt, sample) order."""

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rwpipe.backends import Completion, Generator, SamplingParams
from rwpipe.config import RLConfig
from rwpipe.runtime import stable_seed


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


@dataclass
class Batch:
    """One step's completions and what they answer, flat in (prompt, sample) order."""

    completions: list[Completion]
    questions: list[str]
    golds: list[str]
    prompts: list[str]  # the chat-templated prompts, as sent
    steps: list[list[str]]  # each completion split into steps
    generate_seconds: float


def sample_batch(
    generator: Generator,
    cfg: RLConfig,
    questions: Sequence[str],
    golds: Sequence[str],
    picked: Sequence[int],
    *,
    seed: int,
    split_steps: Callable[[str], list[str]],
) -> Batch:
    """`cfg.group_size` completions of each picked problem, sampled with `seed`."""
    chat = [
        generator.chat_prompt(cfg.prompt_template.replace("{question}", questions[i]),
                              cfg.system_prompt)
        for i in picked
    ]  # fmt: skip
    s = cfg.sampling
    params = SamplingParams(
        n=cfg.group_size, temperature=s.temperature, top_p=s.top_p,
        max_new_tokens=s.max_new_tokens, stop=tuple(s.stop), seed=seed, logprobs=False,
    )  # fmt: skip
    start = time.perf_counter()
    outputs = generator.generate(chat, params)
    seconds = time.perf_counter() - start
    flat = [c for group in outputs for c in group]
    rep = cfg.group_size
    return Batch(
        completions=flat,
        questions=[questions[i] for i in picked for _ in range(rep)],
        golds=[golds[i] for i in picked for _ in range(rep)],
        prompts=[p for p in chat for _ in range(rep)],
        steps=[split_steps(c.text) for c in flat],
        generate_seconds=seconds,
    )
