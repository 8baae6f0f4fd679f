"""The params.yaml contract: one frozen dataclass per section, loaded strictly.

`load_section(path, "rollout", RolloutConfig)` rejects a missing section, an unknown key (and
lists the allowed ones), a value of the wrong type and a choice outside its `Literal`, each
with one line naming the file and the key. Defaults here are the embedded CPU profile; the
shipped params.yaml spells every value out so that `dvc params diff` shows them all.
"""

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from rwpipe.errors import ConfigError

T = TypeVar("T")
PAD_TO_MULTIPLE_OF = 32  # token widths of training and scoring batches (OptimConfig)

# ----------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class BaseConfig:
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available, else cpu
    # What a reasoning step is, for every stage (rwpipe.steps): a blank line ends a step by
    # default; `regex` uses step_pattern as the separator.
    step_split: Literal["blank_line", "line", "regex"] = "blank_line"
    step_pattern: str = ""


@dataclass(frozen=True)
class ModelConfig:
    name: str = "smollm2-135m-instruct"  # the directory under data/models/ (dvc.yaml uses it)
    # A built-in alias (smollm2-135m-instruct), a local transformers directory, or a hub id.
    source: str = "smollm2-135m-instruct"
    revision: str | None = None  # hub revision; ignored for local sources
    # Weights as saved. auto: the source's dtype, float32 for a dequantised GGUF.
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # Where a dequantised GGUF is kept, keyed by the file's SHA-256 and everything else the
    # conversion depends on, so converting the same file again (a fresh DVC workspace, a
    # `dvc exp run --temp`, CI) copies it instead of dequantising; "" converts every time.
    cache_dir: str = "~/.cache/rwpipe/models"

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"name must be a plain directory name, got {self.name!r}")


SyntheticKind = Literal["add", "mul", "sub", "add3", "word", "chain"]


@dataclass(frozen=True)
class SyntheticConfig:
    # Task families, easiest first (see rwpipe.prepare.synthetic for each one's definition).
    kinds: tuple[SyntheticKind, ...] = ("add", "mul", "sub", "add3", "word", "chain")


@dataclass(frozen=True)
class PrepareConfig:
    # Where problems come from: "synthetic", a .json/.jsonl/.parquet file or directory
    # (GSM8K, MATH or generic question/answer rows), or "hf:<dataset>[:<config>]" (online).
    train: str = "synthetic"
    eval: str = "synthetic"
    format: Literal["auto", "gsm8k", "math", "generic"] = "auto"
    hf_train_split: str = "train"  # split names used for hub datasets
    hf_eval_split: str = "test"
    n_train: int = 256  # rows kept (or generated) per split; 0 keeps all rows of a file
    n_eval: int = 64
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        if self.n_train < 0 or self.n_eval < 0:
            raise ValueError("n_train and n_eval must be >= 0")


@dataclass(frozen=True)
class SamplingConfig:
    n: int = 4  # samples per prompt
    temperature: float = 0.8  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()  # extra stop strings (the model's end-of-turn always stops)

    def __post_init__(self) -> None:
        if self.n < 1 or self.max_new_tokens < 1:
            raise ValueError("n and max_new_tokens must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")


@dataclass(frozen=True)
class VLLMConfig:
    # Engine knobs passed to vllm.LLM; see README "Scaling out" for multi-GPU launches.
    tensor_parallel_size: int = 1
    # Engine replicas, each in its own process on its share of the cores or GPUs, splitting
    # every call's prompts (rwpipe.backends.replicas); applies to the hf backend too.
    data_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85  # CUDA only; on CPU the KV cache is kv_cache_gib
    kv_cache_gib: float = 2.0  # CPU KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE)
    enforce_eager: bool = True  # CPU: torch.compile costs minutes at start and was slower here
    max_model_len: int = 2048
    # Where torch.compile keeps its caches (vLLM's compiled graphs, inductor's kernels) when
    # enforce_eager is off, so that a later stage or run starts warm; "" keeps vLLM's and
    # torch's own defaults. VLLM_CACHE_ROOT / TORCHINDUCTOR_CACHE_DIR in the environment win.
    compile_cache_dir: str = "~/.cache/rwpipe/compile"

    def __post_init__(self) -> None:
        for key in ("tensor_parallel_size", "data_parallel_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")


@dataclass(frozen=True)
class GenerationConfig:
    """The generation engine. Defined once in the `engine` section of params.yaml; a stage's
    own `engine:` mapping (rollout, annotate, rl, eval.search) holds only the keys where that
    stage differs, merged over the shared section (see `load_section`)."""

    backend: Literal["auto", "vllm", "hf"] = "auto"  # auto: vllm where it imports, else hf
    # What the engine computes in. auto: bfloat16 on CUDA and on CPUs with native bfloat16
    # (AVX-512 BF16, AMX: read from the CPU flags), float32 elsewhere (rwpipe.runtime).
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    hf_batch_size: int = 64  # sequences per transformers generate() call
    vllm: VLLMConfig = field(default_factory=VLLMConfig)


@dataclass(frozen=True)
class RolloutConfig:
    splits: tuple[Literal["train", "eval"], ...] = ("train", "eval")  # which problems to sample
    system_prompt: str | None = None  # None: the chat template's default system turn
    # The user turn; {question} is replaced by the problem.
    prompt_template: str = "{question}"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    engine: GenerationConfig = field(default_factory=GenerationConfig)
    shard_size: int = 32  # problems per resumable shard

    def __post_init__(self) -> None:
        if "{question}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {question}")
        if self.shard_size < 1 or not self.splits:
            raise ValueError("shard_size must be >= 1 and splits non-empty")


@dataclass(frozen=True)
class CompletionConfig:
    """How the completer continues a step prefix (Monte-Carlo labels)."""

    k: int = 4  # completions per tested prefix (Math-Shepherd used 8, OmegaPRM 16)
    # omegaprm: draw k_first first, the rest only if none reached the gold answer (= k: off)
    k_first: int = 2
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 128

    def __post_init__(self) -> None:
        if not 1 <= self.k_first <= self.k or self.max_new_tokens < 1:
            raise ValueError("need 1 <= k_first <= k and max_new_tokens >= 1")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be > 0 (MC needs sampling) and top_p in (0, 1]")


@dataclass(frozen=True)
class JudgeConfig:
    """An LLM judge (rwpipe.judge): the annotate stage's model (local) or a server."""

    # first wrong step, outcome verdict, or (eval's critic only) which of two solutions is better
    mode: Literal["critique", "verdict", "pairwise"] = "critique"
    # An OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 ("" = run the stage's model
    # locally through `engine`).
    base_url: str = ""
    model: str = ""  # the served model name (server only)
    api_key_env: str = ""  # the NAME of the environment variable holding the API key
    k: int = 1  # samples per judgement, majority vote
    temperature: float = 0.0  # 0 = greedy (k must be 1)
    max_new_tokens: int = 512
    with_reference: bool = True  # verdict mode: show the gold answer to the judge
    # verdict mode: boxed (strict: only \boxed{correct|incorrect}) | boxed_or_sentence (also a
    # last line "... is correct.", for small judges that do not box)
    verdict_parse: Literal["boxed", "boxed_or_sentence"] = "boxed"
    concurrency: int = 4  # server: requests in flight
    retries: int = 3  # server: extra attempts on connection errors, timeouts, 429, 5xx
    timeout_s: float = 120.0  # server: per request

    def __post_init__(self) -> None:
        if self.k < 1 or self.max_new_tokens < 1 or self.concurrency < 1 or self.retries < 0:
            raise ValueError("need k, max_new_tokens, concurrency >= 1 and retries >= 0")
        if self.k > 1 and self.temperature <= 0:
            raise ValueError("k > 1 samples need temperature > 0")
        if self.base_url and not self.model:
            raise ValueError("a judge server (base_url) needs model")


@dataclass(frozen=True)
class AnnotateConfig:
    # verify: outcome labels only; mc: Math-Shepherd; omegaprm: binary search for the first
    # error; judge: an LLM judge (`judge`); consensus: `consensus_of`'s labels kept only where
    # the judge's critique puts the first error at the same step
    method: Literal["verify", "mc", "omegaprm", "judge", "consensus"] = "omegaprm"
    consensus_of: Literal["mc", "omegaprm"] = "omegaprm"
    splits: tuple[Literal["train", "eval"], ...] = ("train",)  # rollouts that get step labels
    select: Literal["all", "incorrect"] = "all"  # mc: sample correct rollouts too, or infer them
    # Stop sampling once this many completion tokens are spent (0 = no limit); later rollouts
    # keep outcome labels only. Checked between shards, so a run ends at most a shard over.
    budget_tokens: int = 0
    completion: CompletionConfig = field(default_factory=CompletionConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    engine: GenerationConfig = field(default_factory=GenerationConfig)
    shard_size: int = 16  # problems per resumable shard (their prefixes go out in one batch)

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.budget_tokens < 0:
            raise ValueError("shard_size must be >= 1 and budget_tokens >= 0")
        if self.judge.mode == "pairwise":
            raise ValueError("judge.mode pairwise compares two solutions: it labels no rollout")
        if self.method == "consensus" and self.judge.mode != "critique":
            raise ValueError("method consensus compares first errors: judge.mode must be critique")


@dataclass(frozen=True)
class PairsConfig:
    """Preference pairs for the ORM (rwpipe.pairs)."""

    splits: tuple[Literal["train", "eval"], ...] = ("train", "eval")
    per_problem: int = 4  # (correct, incorrect) pairs drawn per problem at most
    margin: Literal["none", "soft"] = "none"  # soft: from the MC step values
    margin_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.per_problem < 1 or self.margin_scale < 0 or not self.splits:
            raise ValueError("need per_problem >= 1, margin_scale >= 0 and splits non-empty")


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation knobs shared by the reward-model trainers (and rl)."""

    epochs: int = 2
    lr: float = 2e-4  # LoRA; full fine-tuning wants ~1e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    batch_size: int = 8  # sequences (or pairs) per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    max_grad_norm: float = 1.0
    max_length: int = 512  # tokens; longer solutions lose their last steps
    gradient_checkpointing: bool = False
    checkpoint_every: int = 20  # optimizer steps between resumable checkpoints
    # A micro-batch's width is padded up to a multiple of this (1: to its longest sequence).
    # Few distinct matmul shapes keep oneDNN's per-shape primitive cache small on CPU: with
    # every width its own shape, an RL run's RSS grew by tens of MiB a step (bench/rl_memory).
    # The rounding stops at the model's position limit (`pad_batch`).
    pad_to_multiple_of: int = PAD_TO_MULTIPLE_OF

    def __post_init__(self) -> None:
        fields = (self.epochs, self.batch_size, self.grad_accum, self.checkpoint_every)
        if min(*fields, self.pad_to_multiple_of) < 1:
            raise ValueError(
                "epochs, batch_size, grad_accum, checkpoint_every and pad_to_multiple_of"
                " must be >= 1"
            )
        if self.lr <= 0 or not 0 <= self.warmup_ratio < 1 or self.max_length < 16:
            raise ValueError("need lr > 0, 0 <= warmup_ratio < 1 and max_length >= 16")


@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = True  # false: full fine-tuning
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = (
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    )  # fmt: skip


@dataclass(frozen=True)
class CritiquesConfig:
    """Verification critiques for a generative PRM (`rwpipe.critique`), from the labels."""

    # template: written from the step labels | judge: sampled from a judge, kept where their
    # verdicts agree with the labels
    source: Literal["template", "judge"] = "template"
    splits: tuple[Literal["train", "eval"], ...] = ("train",)
    judge: JudgeConfig = field(
        default_factory=lambda: JudgeConfig(k=4, temperature=0.8, max_new_tokens=512)
    )
    engine: GenerationConfig = field(default_factory=GenerationConfig)  # a local judge's
    shard_size: int = 32  # judge: solutions per resumable shard (a killed run keeps finished ones)

    def __post_init__(self) -> None:
        if not self.splits:
            raise ValueError("splits must name at least one split")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")


@dataclass(frozen=True)
class TrainRMConfig:
    """Outcome reward model: a scalar head on the policy's backbone."""

    name: str = "orm"  # the directory under data/models/
    loss: Literal["bt", "pointwise"] = "bt"  # Bradley-Terry on pairs, or BCE on outcomes
    pairs_per_problem: int = 4  # bt: (correct, incorrect) pairs drawn per problem
    eval_fraction: float = 0.2  # problems held out of the train split for evaluation
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: rwpipe.runtime.default_dtype
    optim: OptimConfig = field(default_factory=OptimConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)

    def __post_init__(self) -> None:
        if self.pairs_per_problem < 1 or not 0 < self.eval_fraction < 1:
            raise ValueError("need pairs_per_problem >= 1 and 0 < eval_fraction < 1")


@dataclass(frozen=True)
class TrainPRMConfig:
    """Process reward model: discriminative (step labels), implicit (outcome labels only) or
    generative (a causal LM fine-tuned on verification critiques of the step labels)."""

    name: str = "prm"
    kind: Literal["discriminative", "implicit", "generative"] = "discriminative"
    targets: Literal["hard", "soft"] = "hard"  # discriminative: step_hard or MC values
    # discriminative: text appended after every step, whose last token carries the step's
    # label ("" = the step's own last token, its separator).
    step_tag: str = ""
    beta: float = 0.05  # implicit: reward = beta * log(pi / pi_ref)
    eval_fraction: float = 0.2
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    optim: OptimConfig = field(default_factory=OptimConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)

    def __post_init__(self) -> None:
        if self.beta <= 0 or not 0 < self.eval_fraction < 1:
            raise ValueError("need beta > 0 and 0 < eval_fraction < 1")


@dataclass(frozen=True)
class RLSamplingConfig:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1:
            raise ValueError("need temperature > 0, top_p in (0, 1] and max_new_tokens >= 1")


@dataclass(frozen=True)
class RewardsConfig:
    """Reward terms and their weights (0 turns a term off)."""

    verifiable: float = 1.0  # math-verify: 1 for a correct final answer, else 0
    orm: float = 0.0  # the ORM's P(correct) (needs --orm)
    prm: float = 0.0  # the PRM's step scores, through the credit rule (needs --prm)
    implicit_prm: float = 0.0  # PRIME: an implicit PRM updated online from outcome labels
    implicit_beta: float = 0.05
    implicit_lr: float = 1.0e-4
    length_penalty: float = 0.0  # minus this times (tokens / max_new_tokens)


@dataclass(frozen=True)
class RLConfig:
    """GRPO-family policy optimisation (rwpipe.rl)."""

    name: str = "policy-rl"  # the directory under data/models/
    splits: tuple[Literal["train", "eval"], ...] = ("train",)  # problems to train on
    system_prompt: str | None = None
    prompt_template: str = "{question}"  # the same meaning as rollout's
    # RL's own seed (LoRA init, prompt order, sampling); None: the base seed. Short RL runs on
    # small models move between seeds: sweep it (`dvc exp run -S rl.seed=1`) before trusting one.
    seed: int | None = None
    steps: int = 8  # RL iterations (one group of samples and ppo_epochs updates each)
    prompts_per_step: int = 8
    group_size: int = 4  # completions per prompt (G)
    estimator: Literal["grpo", "drgrpo", "rloo", "reinforce_pp"] = "grpo"
    loss_agg: Literal["seq_mean_token_mean", "token_mean", "token_sum"] = "seq_mean_token_mean"
    clip_low: float = 0.2  # ratio clipped to [1 - clip_low, 1 + clip_high]
    clip_high: float = 0.2  # > clip_low: DAPO's clip-higher
    kl_coef: float = 0.0  # k3 KL(pi || pi_ref) weight; the reference is the base policy
    ppo_epochs: int = 1  # updates per batch (1: strictly on-policy, the ratio is 1)
    credit: Literal["sum", "min_form", "clip", "delta"] = "min_form"  # PRM step rewards -> returns
    clip_eta: float = 0.5  # credit clip: r' = min(r - eta, 0)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    sampling: RLSamplingConfig = field(default_factory=RLSamplingConfig)
    engine: GenerationConfig = field(default_factory=GenerationConfig)
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, batch_size=8))
    lora: LoraConfig = field(default_factory=LoraConfig)

    def __post_init__(self) -> None:
        if min(self.steps, self.prompts_per_step, self.ppo_epochs) < 1 or self.group_size < 2:
            raise ValueError("need steps, prompts_per_step, ppo_epochs >= 1 and group_size >= 2")
        if not 0 <= self.clip_low < 1 or self.clip_high < 0 or self.kl_coef < 0:
            raise ValueError("need 0 <= clip_low < 1, clip_high >= 0 and kl_coef >= 0")
        if "{question}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {question}")
        if not self.splits:
            raise ValueError("splits must be non-empty")


@dataclass(frozen=True)
class SearchConfig:
    """PRM-guided step-level search on eval problems (rwpipe.eval.search)."""

    problems: int = 0  # eval problems to search (the first ones; 0 = no search)
    method: Literal["beam", "dvts", "particles"] = "beam"
    beam_width: int = 2  # beams; dvts: independent subtrees; particles: particles
    expansions: int = 2  # next steps sampled per live beam
    max_steps: int = 8
    step_max_tokens: int = 64
    max_new_tokens: int = 192  # per solution: match rollout.sampling.max_new_tokens
    temperature: float = 0.8
    aggregation: Literal["min", "last", "prod", "mean", "sum"] = "last"
    resample_temperature: float = 1.0  # particles: softmax temperature of the resampling
    engine: GenerationConfig = field(default_factory=GenerationConfig)

    def __post_init__(self) -> None:
        if self.problems < 0 or min(self.beam_width, self.expansions, self.max_steps) < 1:
            raise ValueError("need problems >= 0 and beam_width, expansions, max_steps >= 1")
        if self.resample_temperature <= 0:
            raise ValueError("resample_temperature must be > 0")
        if self.temperature <= 0:
            raise ValueError("search samples: temperature must be > 0")


SearchMethod = Literal["majority", "best_of_n", "weighted_vote", "beam", "dvts", "particles"]
# select among the rollout pool's first N samples (majority: no reward model, the baseline)
POOL_METHODS = ("majority", "best_of_n", "weighted_vote")
TREE_METHODS = ("beam", "dvts", "particles")  # PRM-guided step-level search (rwpipe.eval.search)


@dataclass(frozen=True)
class SearchStageConfig:
    """Stage `search`: every test-time method at each budget on the same eval problems
    (rwpipe.eval.budget). A budget N is best-of-N's and the weighted vote's N (the first N
    rollouts of a problem), the beams of beam search, DVTS's subtrees and the particles."""

    problems: int = 8  # of the split, taken in turn from each level (0 = off: empty outputs)
    split: Literal["train", "eval"] = "eval"
    budgets: tuple[int, ...] = (2, 4)
    methods: tuple[SearchMethod, ...] = POOL_METHODS + TREE_METHODS
    shard_size: int = 8  # problems per resumable shard (every method and budget in one shard)
    batch_size: int = 8  # PRM scoring batch
    aggregation: Literal["min", "last", "prod", "mean", "sum"] = "last"  # PRM step scores
    # The tree searches (as eval.search): beam search keeps N beams of `expansions` children.
    expansions: int = 2
    max_steps: int = 8
    step_max_tokens: int = 64
    max_new_tokens: int = 96  # per solution: match rollout.sampling.max_new_tokens
    temperature: float = 0.8
    resample_temperature: float = 1.0  # particles: softmax temperature of the resampling
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # the PRM's scoring dtype
    # A generative PRM: 0 = P(correct) at each verdict of one teacher-forced critique; K = the
    # vote over K critiques it samples per candidate (its tokens are counted apart).
    critique_votes: int = 0
    critique_temperature: float = 0.8
    critique_max_new_tokens: int = 256
    engine: GenerationConfig = field(default_factory=GenerationConfig)

    def __post_init__(self) -> None:
        if self.problems < 0 or min(self.shard_size, self.batch_size) < 1:
            raise ValueError("need problems >= 0 and shard_size, batch_size >= 1")
        if self.critique_votes < 0 or self.critique_temperature <= 0:
            raise ValueError("need critique_votes >= 0 and critique_temperature > 0")
        if not self.budgets or min(self.budgets) < 1 or len(set(self.budgets)) < len(self.budgets):
            raise ValueError(f"budgets must be distinct and >= 1, got {list(self.budgets)}")
        if not self.methods or len(set(self.methods)) < len(self.methods):
            raise ValueError(f"methods must be non-empty and distinct, got {list(self.methods)}")
        # the remaining knobs are checked by SearchConfig, built here once to fail early
        self.tree("beam", self.budgets[0])

    def tree(self, method: str, budget: int) -> "SearchConfig":
        """The `rwpipe.eval.search` config of tree method `method` at budget `budget`."""
        return SearchConfig(
            method=method, beam_width=budget, expansions=self.expansions,  # type: ignore[arg-type]
            max_steps=self.max_steps, step_max_tokens=self.step_max_tokens,
            max_new_tokens=self.max_new_tokens, temperature=self.temperature,
            aggregation=self.aggregation, resample_temperature=self.resample_temperature,
            engine=self.engine,
        )  # fmt: skip


@dataclass(frozen=True)
class EvalConfig:
    split: Literal["train", "eval"] = "eval"  # whose rollouts to evaluate
    # The reward models' scoring dtype (auto: rwpipe.runtime.default_dtype); the engines' is
    # engine.dtype.
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    ns: tuple[int, ...] = (1, 2, 4)  # best-of-N sizes (up to the samples per problem)
    draws: int = 50  # random size-N subsets per problem
    aggregations: tuple[Literal["min", "last", "prod", "mean", "sum"], ...] = (
        "min", "last", "prod", "mean",
    )  # fmt: skip
    # ProcessBench sources to evaluate the PRM and any critic on, comma-separated subsets:
    # `sample` (the shipped 150 GSM8K + 150 MATH items) or `sample:<subset>`,
    # `hf:<dataset>:<split>`, or ProcessBench-format JSON files ("" = skip); the report averages
    # over subsets.
    processbench: str = ""
    processbench_max: int = 0  # items (0 = all)
    prmbench: str = ""  # a PRMBench-format JSONL file: PRMScore per error class ("" = skip)
    prmbench_max: int = 0  # items per error class (0 = all)
    threshold: float = 0.5  # a PRM step score below this marks a wrong step (fixed rule)
    # ProcessBench-format file(s) to tune the threshold on instead (best F1); never one of the
    # reported subsets. "" = the fixed threshold above.
    threshold_tune: str = ""
    batch_size: int = 8
    # A generative PRM's step scores: 0 = P(correct) at each verdict of one teacher-forced
    # critique; K > 0 = the vote over K critiques sampled with eval.search.engine
    # (verifier-side test-time scaling: `rwpipe.critique.vote_scores`).
    critique_votes: int = 0
    critique_temperature: float = 0.8
    critique_max_new_tokens: int = 256
    search: SearchConfig = field(default_factory=SearchConfig)
    # An LLM critic on ProcessBench: a server here, or a local model given as --critic.
    critic: JudgeConfig = field(default_factory=JudgeConfig)

    def __post_init__(self) -> None:
        if not self.ns or min(self.ns) < 1 or self.draws < 1 or self.batch_size < 1:
            raise ValueError("ns must be non-empty and >= 1; draws and batch_size >= 1")
        if self.critique_votes < 0 or self.critique_temperature <= 0:
            raise ValueError("need critique_votes >= 0 and critique_temperature > 0")
        tune, shown = _sources(self.threshold_tune), _sources(self.processbench)
        if tune & shown:
            raise ValueError(
                "threshold_tune names a reported processbench subset "
                f"({', '.join(sorted(str(p) for p in tune & shown))}): tune on another split"
            )


def _sources(spec: str) -> set[str]:
    """The ProcessBench sources of an `eval.processbench`-style spec, one name each (the shipped
    sample per subset, hub ids as written, files resolved), to compare two specs."""
    out: set[str] = set()
    for token in (t.strip() for t in spec.split(",")):
        if token == "sample":
            out |= {"sample:gsm8k", "sample:math"}
        elif token.startswith(("sample:", "hf:")):
            out.add(token)
        elif token:
            out.add(str(Path(token).resolve()))
    return out


SECTIONS: dict[str, type] = {
    "base": BaseConfig,
    "engine": GenerationConfig,
    "model": ModelConfig,
    "prepare": PrepareConfig,
    "rollout": RolloutConfig,
    "annotate": AnnotateConfig,
    "pairs": PairsConfig,
    "critiques": CritiquesConfig,
    "train_rm": TrainRMConfig,
    "train_prm": TrainPRMConfig,
    "rl": RLConfig,
    "eval": EvalConfig,
    "search": SearchStageConfig,
}

# ----------------------------------------------------------------------------------------------
# Strict loading


def read_params(path: str | Path) -> dict[str, Any]:
    """Parse a params.yaml file into a mapping of sections."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def load_section(path: str | Path, section: str, cls: type[T] | None = None) -> T:
    """Load one params.yaml section into its dataclass, strictly.

    Args:
        path: the params file.
        section: the section name (also the stage name).
        cls: the dataclass; defaults to `SECTIONS[section]`.

    Raises:
        ConfigError: one line naming the file, the key and the problem.
    """
    cls = cls or SECTIONS[section]
    data = read_params(path)
    if section not in data:
        raise ConfigError(f"{path}: missing section '{section}'")
    shared = data.get("engine") if section != "engine" else None
    if shared is not None and not isinstance(shared, dict):
        raise ConfigError(f"{path}: engine: expected a mapping, got {_name(shared)}")
    return build(cls, data[section], f"{path}: {section}", shared or {})


def merge(base: dict[str, Any], over: Any) -> Any:
    """`over` laid over `base`, mapping by mapping (a non-mapping in `over` replaces)."""
    if not isinstance(over, dict):
        return over
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(base[key], value) if isinstance(base.get(key), dict) else value
    return out


def build(cls: type[T], data: Any, where: str, engine: dict[str, Any] | None = None) -> T:
    """Build dataclass `cls` from a mapping, checking keys and types recursively.

    `engine` is the shared `engine` section: every `GenerationConfig` field inside `cls` starts
    from it, and the field's own mapping overrides the keys it names.
    """
    if data is None:
        data = {}
    if cls is GenerationConfig and engine:
        data = merge(engine, data)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(fields))})"
        )
    if engine:  # an engine the section omits still starts from the shared one
        data = data | {f: {} for f in fields if f not in data and _holds_engine(hints[f])}
    values = {k: _coerce(hints[k], v, f"{where}.{k}", engine) for k, v in data.items()}
    try:
        return cls(**values)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _holds_engine(tp: Any) -> bool:
    """Whether dataclass `tp` is, or holds at any depth, a GenerationConfig."""
    if tp is GenerationConfig:
        return True
    if not dataclasses.is_dataclass(tp):
        return False
    return any(_holds_engine(h) for h in typing.get_type_hints(tp).values())


def _coerce(tp: Any, value: Any, where: str, engine: dict[str, Any] | None = None) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where, engine)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            choices = ", ".join(map(str, args))
            raise ConfigError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {_name(value)}")
        item = args[0]
        return tuple(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        # bool is a subclass of int: reject `n: true` for an int field.
        if not isinstance(value, tp) or (tp is not bool and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {_name(value)} {value!r}")
        return value
    if tp is Any:
        return value
    raise ConfigError(f"{where}: unsupported field type {tp}")  # a bug in this module


def _name(value: Any) -> str:
    return "null" if value is None else type(value).__name__
