"""Arrow schemas of every rwpipe artifact: the contract between stages.

Each artifact has a schema, a key (columns whose values are unique per row) and value checks,
all declared here and enforced by `rwpipe.artifacts` on every write and every read.
Bump `SCHEMA_VERSION` when a schema changes in a way old files cannot be cast to.
"""

from dataclasses import dataclass, field

import pyarrow as pa

SCHEMA_VERSION = 1
# Versions this code can still read (cast to the current schema without loss).
SUPPORTED_VERSIONS = (1,)

SPLITS = ("train", "eval")
VERDICTS = ("correct", "incorrect", "unverified", "unverifiable")


def _f(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


@dataclass(frozen=True)
class ArtifactSpec:
    """What an artifact must look like.

    Attributes:
        schema: the Arrow schema files are cast to (nullability enforced by the cast).
        key: columns that identify a row; their combination is unique.
        choices: column -> allowed string values.
        ranges: column -> inclusive (low, high) bounds; list columns are checked element-wise.
        non_empty: string columns that may not be "" (after stripping whitespace).
    """

    schema: pa.Schema
    key: tuple[str, ...]
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    non_empty: tuple[str, ...] = ()


PROBLEMS = ArtifactSpec(
    schema=pa.schema(
        [
            _f("problem_id", pa.string()),
            _f("split", pa.string()),  # train | eval
            _f("source", pa.string()),  # synthetic, gsm8k, math, a file stem or a hub id
            _f("question", pa.string()),
            _f("answer", pa.string(), nullable=True),  # normalised gold final answer
            _f("solution", pa.string(), nullable=True),  # reference worked solution, if any
            _f("category", pa.string(), nullable=True),  # task family or MATH subject
            _f("level", pa.int32(), nullable=True),  # difficulty, 1 = easiest
        ]
    ),
    key=("problem_id",),
    choices={"split": SPLITS},
    ranges={"level": (0, None)},
    non_empty=("problem_id", "question"),
)

ROLLOUTS = ArtifactSpec(
    schema=pa.schema(
        [
            _f("problem_id", pa.string()),
            _f("sample_idx", pa.int32()),
            _f("split", pa.string()),
            _f("question", pa.string()),  # the problem text, before any template
            _f("prompt", pa.string()),  # the prompt exactly as sent (chat template applied)
            _f("completion", pa.string()),
            _f("token_ids", pa.list_(pa.int32())),
            _f("logprobs", pa.list_(pa.float32())),  # of each sampled token
            _f("finish_reason", pa.string()),  # stop | length
            _f("num_tokens", pa.int32()),
            _f("steps", pa.list_(pa.string())),  # rwpipe.steps.split_steps(completion)
            _f("pred", pa.string(), nullable=True),  # extracted final answer
            _f("gold", pa.string(), nullable=True),
            _f("verdict", pa.string()),  # rwpipe.verify: correct|incorrect|unverified|unverifiable
            _f("seed", pa.int64()),
        ]
    ),
    key=("problem_id", "sample_idx"),
    choices={"split": SPLITS, "finish_reason": ("stop", "length"), "verdict": VERDICTS},
    ranges={"sample_idx": (0, None), "num_tokens": (0, None), "logprobs": (None, 0.0)},
    non_empty=("problem_id",),
)

LABEL_METHODS = ("verify", "mc", "omegaprm", "judge", "consensus")
LABEL_STATUSES = (
    "labelled",  # step labels from Monte-Carlo estimates
    "inferred",  # a correct solution labelled all-correct without sampling
    "outcome_only",  # no step labels: method verify, a split not selected, or over budget
    "no_gold",
    "unverifiable",
    "too_hard",  # omegaprm: no completion from the bare question reached the gold answer
    "no_steps",
    "judged",  # judge: a verdict or first-error index by majority over its samples
    "abstained",  # judge: no sample parsed (or a tie); judge_raw keeps the text
    "disagreed",  # consensus: the MC method and the judge put the first error apart
)

LABELS = ArtifactSpec(
    schema=pa.schema(
        [
            _f("problem_id", pa.string()),
            _f("sample_idx", pa.int32()),
            _f("split", pa.string()),
            _f("question", pa.string()),
            _f("prompt", pa.string()),
            _f("steps", pa.list_(pa.string())),
            _f("gold", pa.string(), nullable=True),
            _f("pred", pa.string(), nullable=True),
            _f("verdict", pa.string()),
            _f("outcome", pa.int8(), nullable=True),  # 1 correct, 0 incorrect, null unknown
            _f("method", pa.string()),
            _f("status", pa.string()),
            # Per step (same length as steps); null where the method gives no label.
            _f("step_hard", pa.list_(pa.field("item", pa.int8(), nullable=True))),
            _f("step_soft", pa.list_(pa.field("item", pa.float32(), nullable=True))),
            _f("step_visits", pa.list_(pa.int32())),  # completions drawn from the prefix
            _f("first_error", pa.int32(), nullable=True),  # 0-based; -1 no error; null unknown
            _f("completions", pa.int32()),  # spent on this rollout's labels
            _f("tokens", pa.int64()),
            # judge / consensus: the judge's verdict (1 correct, 0 incorrect) or first-error
            # index, and its first sample's text; null for the other methods.
            _f("judge_value", pa.int32(), nullable=True),
            _f("judge_raw", pa.string(), nullable=True),
        ]
    ),
    key=("problem_id", "sample_idx"),
    choices={
        "split": SPLITS,
        "verdict": VERDICTS,
        "method": LABEL_METHODS,
        "status": LABEL_STATUSES,
    },
    ranges={
        "outcome": (0, 1),
        "step_hard": (0, 1),
        "step_soft": (0.0, 1.0),
        "step_visits": (0, None),
        "first_error": (-1, None),
        "completions": (0, None),
        "tokens": (0, None),
    },
    non_empty=("problem_id",),
)

SCORE_FORMATS = ("rwpipe", "math_shepherd", "qwen_prm", "trl_prm")

SCORES = ArtifactSpec(
    schema=pa.schema(
        [
            _f("problem_id", pa.string()),
            _f("sample_idx", pa.int32()),
            _f("split", pa.string()),
            _f("model", pa.string()),  # the scoring model's directory name or hub id
            _f("kind", pa.string()),  # orm | prm | implicit_prm | generative_prm
            _f("format", pa.string()),  # how the model reads solutions (rwpipe.score)
            _f("outcome_score", pa.float32(), nullable=True),  # null: no step survived truncation
            _f("step_scores", pa.list_(pa.float32())),  # per step (kept steps; empty for an ORM)
        ]
    ),
    key=("problem_id", "sample_idx"),
    choices={
        "split": SPLITS,
        "kind": ("orm", "prm", "implicit_prm", "generative_prm"),
        "format": SCORE_FORMATS,
    },  # fmt: skip
    non_empty=("problem_id",),
)

PAIRS = ArtifactSpec(
    schema=pa.schema(
        [
            _f("problem_id", pa.string()),
            _f("split", pa.string()),
            _f("question", pa.string()),
            _f("prompt", pa.string()),
            _f("chosen_idx", pa.int32()),  # sample_idx of the correct rollout
            _f("rejected_idx", pa.int32()),  # sample_idx of the incorrect one
            _f("chosen_steps", pa.list_(pa.string())),
            _f("rejected_steps", pa.list_(pa.string())),
            _f("margin", pa.float32(), nullable=True),  # Bradley-Terry margin; null: none
        ]
    ),
    key=("problem_id", "chosen_idx", "rejected_idx"),
    choices={"split": SPLITS},
    ranges={"chosen_idx": (0, None), "rejected_idx": (0, None), "margin": (0.0, None)},
    non_empty=("problem_id",),
)

CRITIQUE_SOURCES = ("template", "judge")

CRITIQUES = ArtifactSpec(
    schema=pa.schema(
        [
            _f("problem_id", pa.string()),
            _f("sample_idx", pa.int32()),
            _f("split", pa.string()),
            _f("question", pa.string()),
            _f("prompt", pa.string()),
            _f("steps", pa.list_(pa.string())),
            _f("critique", pa.string()),  # the target text (rwpipe.critique format)
            _f("step_verdicts", pa.list_(pa.int8())),  # stated verdicts: 1 correct, 0 incorrect
            _f("first_error", pa.int32()),  # 0-based; -1 none
            _f("source", pa.string()),  # template (from the labels) | judge (sampled, filtered)
        ]
    ),
    key=("problem_id", "sample_idx"),
    choices={"split": SPLITS, "source": CRITIQUE_SOURCES},
    ranges={"step_verdicts": (0, 1), "first_error": (-1, None), "sample_idx": (0, None)},
    non_empty=("problem_id", "critique"),
)

SEARCH_METHODS = ("majority", "best_of_n", "weighted_vote", "beam", "dvts", "particles")

SEARCH_RECORDS = ArtifactSpec(
    schema=pa.schema(
        [
            _f("problem_id", pa.string()),
            _f("level", pa.int32(), nullable=True),  # the problem's difficulty (problems artifact)
            _f("method", pa.string()),
            _f("budget", pa.int32()),  # N: samples, beams, DVTS subtrees or particles
            _f("tokens", pa.int64()),  # generated for this problem by this method at this budget
            # 1 right, 0 wrong; best-of-N and votes tied at the top share the credit (the
            # fraction of the tied picks that is right, rwpipe.eval.metrics)
            _f("correct", pa.float32()),
            _f("ess_mean", pa.float32(), nullable=True),  # particles: mean ESS after resampling
        ]
    ),
    key=("problem_id", "method", "budget"),
    choices={"method": SEARCH_METHODS},
    ranges={"budget": (1, None), "tokens": (0, None), "correct": (0.0, 1.0), "level": (0, None)},
    non_empty=("problem_id",),
)

SPECS: dict[str, ArtifactSpec] = {
    "problems": PROBLEMS,
    "rollouts": ROLLOUTS,
    "labels": LABELS,
    "pairs": PAIRS,
    "scores": SCORES,
    "critiques": CRITIQUES,
    "search_records": SEARCH_RECORDS,
}
