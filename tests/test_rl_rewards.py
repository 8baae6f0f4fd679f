"""rl with learned rewards: an ORM or a PRM that prefers a marker token makes the policy
produce it more, for every credit rule.

The reward models are real ones in rwpipe's own format (written by `save_backbone`, the
writer of `rwpipe train-rm` / `train-prm`, and read by the real `rwpipe.score.Scorer`), with
weights set by hand so that what they compute is known:

- layer 0's attention has zero queries and keys, so it averages uniformly over the prefix;
  its values read the marker's embedding dimension, so it writes the fraction of marker
  tokens in the prefix (prompt included) into the residual stream; every other block is off;
- the head reads that dimension against a constant one: sigmoid of a function increasing in
  the fraction: ~0.02 with no marker, ~0.25-0.4 with one, ~0.7-0.8 with two, in a ~33-token
  prompt plus an 18-character completion (the gain sets how fast it saturates).

The ORM reads it at the last token (the whole solution), the PRM at each step's last token (the
prefix up to that step). A PRM score is cumulative, as a real PRM's is (it reads the whole
prefix): a marker raises its own step's score and, diluted, every later one.

Why each credit rule (rwpipe/rl/advantages.py) gets a signal toward the marker: the process
advantage is A_{i,k} = G_{i,k} - mean_i' G_{i',1}, so a rule gives signal exactly when the
returns differ within a group.
- sum: G_k = sum_{j >= k} r_j rises with every step the marker raises.
- min_form: G_k = min_{j >= k} r_j. With a PRM scoring each step alone ("this step has the
  marker") the minimum is ~0 unless every later step has one, so almost no group would differ;
  with the cumulative PRM the minimum over the steps from the marker on is the diluted
  fraction, above the ~0.02 of a completion without it, so the marker's step and those after
  it get the higher return. All-positive rewards are no obstacle: the group baseline removes
  the common level.
- clip: r'_j = min(r_j - eta, 0). With eta below every score all returns are 0 (no signal); at
  the default eta = 0.5 a step without a marker is penalised by ~0.48, one after a marker by
  less or not at all, so the marker raises the return. Its returns are all <= 0, and the
  baseline is the mean first-step return, so every later step of every completion gets a
  positive advantage whatever it holds (-0.2, +0.3, +0.8 over a 3-step completion without a
  marker): unbiased in expectation, but noise the marker's signal must beat. With the marker at
  ~3% of the tokens and lr 2e-2, one seed in six drew so few markers in step 1 that this noise
  won and the policy lost the marker; hence the base rate of ~7% and lr 1e-2 below.
- delta: G_k = r_k - r_K (telescoped; the last step's process reward dropped). The cumulative
  PRM's score is highest at the marker's step and diluted after it, so the marker's step gets
  a positive return and the steps before it a negative one.

The policy is the tiny random LM (rwpipe/model/tiny.py) with one change: a random model samples
each of its 259 tokens ~0.4% of the time, so in a few steps of 16 completions most groups would
hold no marker at all and every advantage would be 0. Its (untied) output row for the marker is
moved along the mean final hidden state so that it samples the marker ~7% of the time, enough
for the groups to differ. Random bytes hold no blank lines, so steps are cut every 6 characters
(a regex step rule; the first step is 12): ~3 steps per completion, for the credit rules to act
on. "Produces it more" is measured on samples: the marker's share of the tokens of 4 x 8
completions of 24 tokens, sampled with a fixed seed from the policy before and from the saved
policy after 3 RL steps with the verifiable reward off (weight 0). Over seeds 0-3 every rule
and the ORM took it from 6.7% to 49-57%; the tests ask for 3x.
"""

import json
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from rwpipe.config import (
    BaseConfig,
    GenerationConfig,
    LoraConfig,
    OptimConfig,
    RewardsConfig,
    RLConfig,
    RLSamplingConfig,
)
from rwpipe.model.tiny import build_tiny_lm

MARKER = "Z"  # in no prompt: the chat template and the synthetic questions hold none
STEP_RULE = dict(step_split="regex", step_pattern=r"[\s\S]{6}")  # random bytes have no \n\n
BONUS = 3.5  # the marker's extra logit along the mean hidden state: ~7% of sampled tokens
QUESTIONS = [f"What is {i} + {i + 2}?" for i in range(4)]


def _marker_id(tokenizer) -> int:
    ids = tokenizer.encode(MARKER, add_special_tokens=False)
    assert len(ids) == 1
    return ids[0]


def _chat_prompts(tokenizer) -> list[str]:
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                      add_generation_prompt=True)
        for q in QUESTIONS
    ]  # fmt: skip


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("rlrm") / "lm", seed=0)


@pytest.fixture(scope="module")
def policy_dir(lm_dir, tmp_path_factory) -> Path:
    """The tiny LM with its output row for the marker raised (see the module docstring)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rwpipe.artifacts import atomic_path

    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    model = AutoModelForCausalLM.from_pretrained(lm_dir, dtype=torch.float32).eval()
    marker = _marker_id(tokenizer)
    with torch.no_grad():
        hidden = torch.cat([
            model(input_ids=torch.tensor([tokenizer.encode(p, add_special_tokens=False)]),
                  output_hidden_states=True).hidden_states[-1][0]
            for p in _chat_prompts(tokenizer)
        ])  # fmt: skip
        mean = hidden.mean(0)  # the final (normed) hidden states share a direction
        head = torch.nn.Linear(mean.numel(), model.config.vocab_size, bias=False)
        head.weight.copy_(model.get_input_embeddings().weight)
        head.weight[marker] += BONUS * mean / mean.pow(2).sum()  # logit +BONUS at the mean state
        model.config.tie_word_embeddings = False
        model.lm_head = head
    out = tmp_path_factory.mktemp("rlrm") / "policy"
    with atomic_path(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out


def _marker_reward_model(lm_dir: Path, kind: str, out: Path, gain: float = 12.0) -> Path:
    """A reward model of `kind` (orm, prm) whose score rises with the marker's share of the
    prefix it reads (see the module docstring), saved as `rwpipe train-rm/prm` saves one."""
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    from rwpipe.train.backbone import Backbone, save_backbone

    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    config = AutoConfig.from_pretrained(lm_dir, num_labels=1)
    config.pad_token_id = tokenizer.pad_token_id
    cls = AutoModelForTokenClassification if kind == "prm" else AutoModelForSequenceClassification
    model = cls.from_config(config).eval()  # every weight is set below
    base = model.model
    marker = _marker_id(tokenizer)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.fill_(1.0 if "norm" in name else 0.0)
        emb = base.embed_tokens.weight
        emb[:, 0] = 1.0  # a constant dimension ...
        emb[marker, 1] = 1.0  # ... and the marker's own
        attn = base.layers[0].self_attn  # q = k = 0: uniform attention over the prefix
        attn.v_proj.weight[0, 1] = 1.0  # value: the marker dimension (kv head 0, heads 0-1)
        attn.o_proj.weight[2, 0] = gain  # head 0 writes the marker fraction to dimension 2
        model.score.weight[0, 2] = 1.0  # logit: fraction dimension minus constant dimension
        model.score.weight[0, 0] = -1.0
    backbone = Backbone(kind, model, tokenizer, torch.device("cpu"))
    save_backbone(backbone, out, {"base_model": "hand-set marker detector"})
    return out


@pytest.fixture(scope="module")
def prm_dir(lm_dir, tmp_path_factory) -> Path:
    return _marker_reward_model(lm_dir, "prm", tmp_path_factory.mktemp("rlrm") / "prm")


@pytest.fixture(scope="module")
def orm_dir(lm_dir, tmp_path_factory) -> Path:
    return _marker_reward_model(lm_dir, "orm", tmp_path_factory.mktemp("rlrm") / "orm")


@pytest.fixture(scope="module")
def problems_file(tmp_path_factory) -> Path:
    from rwpipe import artifacts

    rows = [{"problem_id": f"p{i}", "split": "train", "source": "test", "question": q,
             "answer": str(2 * i + 2), "solution": None, "category": "add", "level": 1}
            for i, q in enumerate(QUESTIONS)]  # fmt: skip
    path = tmp_path_factory.mktemp("rlrm") / "problems.arrow"
    artifacts.write_artifact(pa.Table.from_pylist(rows), path, "problems", section="prepare",
                             config={})  # fmt: skip
    return path


def _marker_share(model_dir: Path) -> float:
    """The marker's share of the tokens of 8 completions of each question (fixed seed)."""
    from rwpipe.backends import SamplingParams
    from rwpipe.backends.hf import HFGenerator

    generator = HFGenerator(str(model_dir), device="cpu", seed=0)
    marker = _marker_id(generator.tokenizer)
    prompts = [generator.chat_prompt(q) for q in QUESTIONS]
    groups = generator.generate(prompts, SamplingParams(n=8, max_new_tokens=24, seed=1234))
    ids = [t for group in groups for c in group for t in c.token_ids]
    return sum(t == marker for t in ids) / len(ids)


@pytest.fixture(scope="module")
def share_before(policy_dir) -> float:
    share = _marker_share(policy_dir)
    assert 0.03 < share < 0.12  # rare enough to leave room, frequent enough to be seen
    return share


def _train(tmp_path: Path, policy_dir: Path, problems_file: Path, rewards: RewardsConfig,
           credit: str = "min_form", **reward_models: Path) -> tuple[Path, dict]:  # fmt: skip
    """`rwpipe rl` in one library call; returns the trained policy and its metrics."""
    from rwpipe.rl import run

    cfg = RLConfig(
        steps=3, prompts_per_step=2, group_size=8, kl_coef=0.0, credit=credit,
        rewards=rewards, sampling=RLSamplingConfig(max_new_tokens=24),
        optim=OptimConfig(lr=1e-2, batch_size=8, checkpoint_every=100),
        lora=LoraConfig(r=4, alpha=8), engine=GenerationConfig(backend="hf"),
    )  # fmt: skip
    base = BaseConfig(seed=0, device="cpu", **STEP_RULE)
    out = tmp_path / "policy-rl"
    metrics = run(cfg, base, problems=problems_file, policy=policy_dir, out=out, **reward_models)
    return out, metrics


# -- the reward models score what the RL tests rely on ---------------------------------------------


def test_marker_reward_models_score_the_marker_share(prm_dir, orm_dir):
    from rwpipe.score import Scorer
    from rwpipe.steps import Solution

    prm = Scorer(prm_dir, device=torch.device("cpu"), dtype=torch.float32)
    orm = Scorer(orm_dir, device=torch.device("cpu"), dtype=torch.float32)
    assert (prm.format, prm.kind, orm.kind) == ("rwpipe", "prm", "orm")
    prompt = _chat_prompts(prm.backbone.tokenizer)[0]
    none, early, late, two = (
        Solution(QUESTIONS[0], prompt, steps)
        for steps in (["abcdef", "ghijkl", "mnopqr"], ["abcZef", "ghijkl", "mnopqr"],
                      ["abcdef", "ghijkl", "mnoZqr"], ["abZdeZ", "ghijkl", "mnopqr"])
    )  # fmt: skip
    (_, s_none), (_, s_early), (_, s_late), (_, s_two) = prm.score([none, early, late, two])
    assert max(s_none) < 0.05 and min(s_early) > 0.2  # a marker lifts its step and later ones
    assert s_late[:2] == pytest.approx(s_none[:2]) and s_late[2] > 0.2  # not earlier ones
    assert all(a < b for a, b in zip(s_early, s_two, strict=True))  # two beat one
    assert s_early[0] > s_early[1] > s_early[2]  # diluted by the tokens after it
    outcomes = [o for o, _ in orm.score([none, early, two])]
    assert outcomes[0] < 0.05 < 0.2 < outcomes[1] < outcomes[2]
    assert outcomes[1] == pytest.approx(s_early[-1])  # same reading at the last token


# -- rl with each learned reward -------------------------------------------------------------------


@pytest.mark.parametrize("credit", ["sum", "min_form", "clip", "delta"])
def test_prm_reward_makes_the_policy_produce_the_marker(
    tmp_path, policy_dir, prm_dir, problems_file, share_before, credit
):
    rewards = RewardsConfig(verifiable=0.0, prm=1.0)
    out, metrics = _train(tmp_path, policy_dir, problems_file, rewards, credit, prm=prm_dir)
    assert metrics["prm_step_score_last"] > metrics["prm_step_score_first"]
    after = _marker_share(out)
    assert after > 3 * share_before, (credit, share_before, after)


def test_orm_reward_makes_the_policy_produce_the_marker(
    tmp_path, policy_dir, orm_dir, problems_file, share_before
):
    rewards = RewardsConfig(verifiable=0.0, orm=1.0)
    out, metrics = _train(tmp_path, policy_dir, problems_file, rewards, orm=orm_dir)
    assert metrics["orm_score_last"] > metrics["orm_score_first"]
    assert metrics["reward_last"] > metrics["reward_first"]  # the ORM is the whole reward
    after = _marker_share(out)
    assert after > 3 * share_before, (share_before, after)
    card = json.loads((out / "rwpipe-policy.json").read_text())
    assert card["params"]["rewards"]["orm"] == 1.0
