"""rl: advantage estimators, credit assignment and the loss against hand-computed values; the
loop on a tiny random model through the real transformers engine (finite loss, parameters
change, KL zero at step 0, exact resume); the stage's outputs and errors."""

import json
import math
import os

import pyarrow as pa
import pytest
import torch

from rwpipe.config import LoraConfig, OptimConfig, RewardsConfig, RLConfig, RLSamplingConfig
from rwpipe.model.tiny import build_tiny_lm, build_tiny_tokenizer
from rwpipe.rl.advantages import (
    outcome_advantages,
    policy_loss,
    process_advantages,
    step_returns,
)
from tests.conftest import run_rwpipe

# -- pure functions ------------------------------------------------------------------------------


def test_outcome_advantages_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    assert outcome_advantages(r, "grpo").tolist()[0] == pytest.approx([1, -1, -1, 1], abs=1e-4)
    assert outcome_advantages(r, "drgrpo").tolist()[0] == pytest.approx([0.5, -0.5, -0.5, 0.5])
    # RLOO: r_i minus the mean of the other three
    t = 2 / 3
    assert outcome_advantages(r, "rloo").tolist()[0] == pytest.approx([t, -t, -t, t])
    two = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # group-centred [[.5, -.5], [0, 0]], then batch-normalised (mean 0, std sqrt(1/8))
    got = outcome_advantages(two, "reinforce_pp").flatten().tolist()
    assert got == pytest.approx([math.sqrt(2), -math.sqrt(2), 0, 0], abs=1e-4)
    assert outcome_advantages(torch.tensor([[0.3, 0.3, 0.3]]), "grpo").abs().max() == 0
    with pytest.raises(ValueError, match="unknown estimator"):
        outcome_advantages(r, "ppo")


def test_credit_assignment_by_hand():
    r = [0.9, 0.2, 0.8]
    assert step_returns(r, "sum") == pytest.approx([1.9, 1.0, 0.8])
    assert step_returns(r, "min_form") == pytest.approx([0.2, 0.2, 0.8])
    assert step_returns(r, "clip", eta=0.5) == pytest.approx([-0.3, -0.3, 0.0])
    assert step_returns(r, "delta") == pytest.approx([0.1, -0.6, 0.0])  # telescopes to r_k - r_K
    assert step_returns([], "sum") == []
    # the hacking the papers describe: more mildly good steps raise the sum, not min or clip
    long, short = [0.6] * 8, [0.6] * 2
    assert step_returns(long, "sum")[0] > step_returns(short, "sum")[0]
    assert step_returns(long, "min_form")[0] == step_returns(short, "min_form")[0]
    assert step_returns(long, "clip", eta=0.5)[0] == step_returns(short, "clip", eta=0.5)[0] == 0
    assert step_returns(long, "delta")[0] == step_returns(short, "delta")[0] == 0


def test_process_advantages_use_the_group_mean_return():
    got = process_advantages([[1.9, 1.0], [0.5]])
    assert got[0] == pytest.approx([0.7, -0.2]) and got[1] == pytest.approx([-0.7])


def test_policy_loss_clip_kl_and_aggregations():
    adv = torch.tensor([[1.0, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    same = torch.zeros(1, 3)
    loss, stats = policy_loss(same, same, adv, mask)
    assert float(loss) == pytest.approx(0.0) and stats["clip_fraction"] == 0
    up = torch.full((1, 3), math.log(1.5))  # ratio 1.5 everywhere
    loss, stats = policy_loss(up, same, adv, mask, clip_low=0.2, clip_high=0.2)
    # +adv: min(1.5, 1.2) -> -1.2 (clip binds); -adv: min(-1.5, -1.2) -> 1.5 (clip inactive)
    assert float(loss) == pytest.approx((-1.2 + 1.5) / 2)
    assert stats["clip_fraction"] == pytest.approx(0.5) and stats["ratio"] == pytest.approx(1.5)
    ref = same + math.log(2.0)  # ref - logp = log 2: k3 = 2 - log 2 - 1
    loss, stats = policy_loss(same, same, adv, mask, ref_logps=ref, kl_coef=0.1)
    k3 = 1 - math.log(2)
    assert stats["kl"] == pytest.approx(k3) and float(loss) == pytest.approx(0.1 * k3)
    two = torch.tensor([[2.0, 2.0, 2.0], [1.0, 0.0, 0.0]])
    m2 = torch.tensor([[1, 1, 1], [1, 0, 0]])
    z = torch.zeros(2, 3)
    seq, _ = policy_loss(z, z, two, m2)
    tok, _ = policy_loss(z, z, two, m2, agg="token_mean")
    tsum, _ = policy_loss(z, z, two, m2, agg="token_sum", max_tokens=4)
    assert float(seq) == pytest.approx(-(2 + 1) / 2)
    assert float(tok) == pytest.approx(-7 / 4)
    assert float(tsum) == pytest.approx(-7 / (2 * 4))


def test_token_steps_maps_tokens_to_the_step_that_holds_them():
    from rwpipe.rl.rewards import token_steps

    tok = build_tiny_tokenizer()  # byte-level: one token per character
    ids = tok.encode("ab\n\ncd<|im_end|>", add_special_tokens=False)
    assert token_steps(tok, ids, ["ab\n\n", "cd"]) == [0, 0, 0, 0, 1, 1, 1]
    assert token_steps(tok, ids, ["ab\n\ncd"]) == [0] * 7
    assert token_steps(tok, ids, []) == [0] * 7


def test_step_prompts_cover_each_problem_once_per_epoch():
    from rwpipe.rl.sampling import step_prompts

    seen = [i for s in range(5) for i in step_prompts(10, 4, s, seed=3)]  # 2 epochs exactly
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    assert step_prompts(10, 4, 2, seed=3) == step_prompts(10, 4, 2, seed=3)
    assert seen[:10] != list(range(10))


# -- the loop on a tiny model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm", seed=0)


def _problems(n=4) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "problem_id": f"p{i}",
                "question": f"What is {i} + 1?",
                "answer": str(i + 1),
                "split": "train",
            }
            for i in range(n)
        ]  # fmt: skip
    )


def _cfg(**kw) -> RLConfig:
    base = dict(
        steps=3, prompts_per_step=2, group_size=3, kl_coef=0.1,
        # a random model is never right: the length penalty gives the groups reward variance
        rewards=RewardsConfig(verifiable=1.0, length_penalty=1.0),
        # random bytes: stop strings make the lengths (and so the rewards) differ
        sampling=RLSamplingConfig(max_new_tokens=24, stop=tuple("abcdefghijklmnopqrst")),
        optim=OptimConfig(lr=5e-2, batch_size=4, checkpoint_every=1),
        lora=LoraConfig(r=4, alpha=8),
    )  # fmt: skip
    return RLConfig(**(base | kw))


def _run(tmp_path, tiny_dir, cfg, stop=None, fingerprint="f", dp=None):
    from rwpipe.backends.hf import HFGenerator
    from rwpipe.rl.loop import run_rl
    from rwpipe.rl.policy import load_policy_model
    from rwpipe.steps import split_steps
    from rwpipe.train.loop import Checkpointer
    from rwpipe.verify import VerifierPool

    torch.manual_seed(0)
    policy = load_policy_model(tiny_dir, cfg, torch.device("cpu"), torch.float32)
    generator = HFGenerator(str(tiny_dir), device="cpu", seed=0)
    with VerifierPool(workers=1) as verifier:
        state = run_rl(
            _problems(), policy, generator, cfg, seed=0,
            checkpointer=Checkpointer(tmp_path, fingerprint), split_steps=split_steps,
            verifier=verifier, stop_after_steps=stop, dp=dp,
        )  # fmt: skip
    return policy, state


def _curve(state):
    drop = {"seconds", "sync_seconds", "generate_seconds", "rss_gib"}
    return [{k: v for k, v in h.items() if k not in drop} for h in state.history]


def test_loop_updates_the_policy_with_finite_loss_and_zero_kl_at_the_start(tmp_path, tiny_dir):
    from rwpipe.rl.policy import load_policy_model

    cfg = _cfg()
    base = load_policy_model(tiny_dir, cfg, torch.device("cpu"), torch.float32)
    before = {n: p.detach().clone() for n, p in base.model.named_parameters() if p.requires_grad}
    policy, state = _run(tmp_path, tiny_dir, cfg)
    assert state.step == 3 and len(state.history) == 3
    assert all(math.isfinite(h["loss"]) for h in state.history)
    assert state.history[0]["kl"] == pytest.approx(0.0, abs=1e-7)  # LoRA B = 0: pi == pi_ref
    assert state.history[-1]["kl"] > 0
    # each step records its time split and the process's memory
    assert all(
        h["rss_gib"] > 0.05 and 0 <= h["sync_seconds"] <= h["seconds"] for h in state.history
    )
    after = dict(policy.model.named_parameters())
    lora_b = [n for n in before if "lora_B" in n]
    assert lora_b and all(not torch.equal(after[n], before[n]) for n in lora_b)
    # the merged weights handed to the engine carry the update under transformers names
    merged = policy.merged_state_dict()
    assert "model.layers.0.self_attn.q_proj.weight" in merged
    assert not any("lora" in k or "base_layer" in k for k in merged)


class _Recorder:
    """An optimizer that keeps the gradients it is asked to apply and changes nothing."""

    def __init__(self, params):
        self.params, self.grads = list(params), None

    def step(self):
        self.grads = [p.grad.detach().clone() for p in self.params]

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None


@pytest.mark.parametrize("kl_coef", [0.0, 0.1])
def test_update_equals_the_whole_sequence_loss_and_gradient(tiny_dir, kl_coef):
    """train_step sorts by length, pads per micro-batch and runs the lm_head on the response
    window only: the loss and gradient must be those of the batch loss written out on whole
    sequences, in one batch."""
    from rwpipe.backends import Completion
    from rwpipe.rl.policy import load_policy_model
    from rwpipe.rl.update import train_step
    from rwpipe.train.backbone import batch_tensors
    from rwpipe.train.losses import token_logprobs

    cfg = _cfg(kl_coef=kl_coef, optim=OptimConfig(batch_size=2, max_grad_norm=1e9))
    torch.manual_seed(0)
    policy = load_policy_model(tiny_dir, cfg, torch.device("cpu"), torch.float32)
    with torch.no_grad():  # LoRA B starts at 0: move it, so that pi != pi_ref
        for n, p in policy.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    g = torch.Generator().manual_seed(1)
    plens, clens = (3, 9, 5, 12, 4), (7, 2, 11, 5, 9)  # unsorted, prompts of unequal length
    prompts = [torch.randint(3, 200, (n,), generator=g).tolist() for n in plens]
    comps = [Completion("", tuple(torch.randint(3, 200, (n,), generator=g).tolist()), (), "stop")
             for n in clens]  # fmt: skip
    advs = [torch.randn(n, generator=g).tolist() for n in clens]
    params = [p for p in policy.model.parameters() if p.requires_grad]
    opt = _Recorder(params)
    sched = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD(params, lr=0.0), lambda s: 1.0)
    stats = train_step(policy, opt, sched, cfg, prompts, comps, advs)
    # the batch loss, by hand: every sequence whole, one batch, logits at every position
    seqs = [p + list(c.token_ids) for p, c in zip(prompts, comps, strict=True)]
    ids, mask = batch_tensors(policy.model, seqs, 0, torch.device("cpu"))
    policy.model.train()
    logps = token_logprobs(policy.model(input_ids=ids, attention_mask=mask).logits, ids)
    with torch.no_grad(), policy.model.disable_adapter():
        ref = token_logprobs(policy.model(input_ids=ids, attention_mask=mask).logits, ids)
    terms = []
    for b, (pl, cl, a) in enumerate(zip(plens, clens, advs, strict=True)):
        lp, rf = logps[b, pl - 1 : pl - 1 + cl], ref[b, pl - 1 : pl - 1 + cl]
        kl = torch.exp(rf - lp) - (rf - lp) - 1  # k3
        terms.append((-(torch.tensor(a) * torch.exp(lp - lp.detach())) + kl_coef * kl).mean())
    loss = torch.stack(terms).mean()
    loss.backward()
    assert stats["loss"] == pytest.approx(loss.item(), abs=1e-6)
    for got, p in zip(opt.grads, params, strict=True):
        torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-6)
    assert any(float(gr.abs().max()) > 0 for gr in opt.grads)


def test_killed_run_resumes_the_same_curve(tmp_path, tiny_dir):
    cfg = _cfg()
    _, full = _run(tmp_path / "a", tiny_dir, cfg)
    _, partial = _run(tmp_path / "b", tiny_dir, cfg, stop=2)
    assert partial.step == 2
    _, resumed = _run(tmp_path / "b", tiny_dir, cfg)
    assert _curve(resumed) == _curve(full)
    # another configuration's checkpoint is not resumed
    _, other = _run(tmp_path / "b", tiny_dir, cfg, fingerprint="g")
    assert other.step == 3 and _curve(other) == _curve(full)


@pytest.mark.parametrize("estimator", ["drgrpo", "rloo", "reinforce_pp"])
def test_every_estimator_runs(tmp_path, tiny_dir, estimator):
    agg = "token_sum" if estimator == "drgrpo" else "token_mean"
    _, state = _run(tmp_path, tiny_dir, _cfg(steps=1, estimator=estimator, loss_agg=agg,
                                             ppo_epochs=2, kl_coef=0.0))  # fmt: skip
    assert math.isfinite(state.history[0]["loss"]) and state.history[0]["grad_norm"] > 0


def test_prime_updates_an_implicit_prm_online(tmp_path, tiny_dir):
    from rwpipe.backends.hf import HFGenerator
    from rwpipe.rl.loop import run_rl
    from rwpipe.rl.policy import load_policy_model
    from rwpipe.steps import split_steps
    from rwpipe.train.backbone import load_backbone
    from rwpipe.train.loop import Checkpointer
    from rwpipe.verify import VerifierPool

    cfg = _cfg(steps=2, rewards=RewardsConfig(verifiable=1.0, implicit_prm=1.0))
    policy = load_policy_model(tiny_dir, cfg, torch.device("cpu"), torch.float32)
    implicit = load_backbone(tiny_dir, "implicit_prm", device=torch.device("cpu"),
                             dtype=torch.float32, lora=cfg.lora)  # fmt: skip
    before = {n: p.detach().clone() for n, p in implicit.model.named_parameters()
              if p.requires_grad}  # fmt: skip
    with VerifierPool(workers=1) as verifier:
        state = run_rl(
            _problems(), policy, HFGenerator(str(tiny_dir), device="cpu", seed=0), cfg, seed=0,
            checkpointer=Checkpointer(tmp_path, "f"), split_steps=split_steps,
            verifier=verifier, implicit=implicit,
        )  # fmt: skip
    assert all(math.isfinite(h["implicit_prm_loss"]) for h in state.history)
    assert "implicit_step_reward" in state.history[1]
    changed = [n for n, p in implicit.model.named_parameters()
               if n in before and not torch.equal(p, before[n])]  # fmt: skip
    assert changed  # the implicit PRM learned from the outcome labels


# -- the stage -----------------------------------------------------------------------------------


def _write_params(path, **rl):
    import yaml

    from rwpipe.artifacts import config_to_dict

    cfg = _cfg(**rl)
    section = config_to_dict(cfg) | {"engine": {"backend": "hf"}}
    path.write_text(yaml.safe_dump({"base": {"seed": 0, "device": "cpu"}, "rl": section}))
    return path


@pytest.fixture
def problems_file(tmp_path):
    from rwpipe import artifacts
    from rwpipe.prepare.synthetic import generate_synthetic

    rows = generate_synthetic(6, 0, ("add",), "train")
    table = pa.Table.from_pylist(rows)
    path = tmp_path / "problems.arrow"
    artifacts.write_artifact(table, path, "problems", section="prepare", config={})
    return path


def test_stage_writes_policy_curves_and_metrics(tmp_path, tiny_dir, problems_file):
    params = _write_params(tmp_path / "params.yaml", steps=2)
    out, report = tmp_path / "policy-rl", tmp_path / "rl"
    result = run_rwpipe("rl", problems_file, tiny_dir, out, "--report-dir", report,
                        "-p", params, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    card = json.loads((out / "rwpipe-policy.json").read_text())
    assert card["params"]["steps"] == 2 and (out / "model.safetensors").is_file()
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["steps"] == 2 and "reward_first" in metrics
    assert (report / "curves.png").is_file()
    assert (report / "curves.csv").read_text().count("\n") == 3
    assert not (tmp_path / "policy-rl.run").exists()  # checkpoints cleaned up


def test_run_is_the_stage_in_one_library_call(tmp_path, tiny_dir, problems_file):
    from rwpipe.config import BaseConfig, GenerationConfig
    from rwpipe.errors import InputError
    from rwpipe.rl import run

    base, out = BaseConfig(seed=0, device="cpu"), tmp_path / "policy-rl"
    cfg = _cfg(steps=1, engine=GenerationConfig(backend="hf"))
    with pytest.raises(InputError, match="needs --orm"):
        run(_cfg(rewards=RewardsConfig(orm=1.0)), base, problems=problems_file, policy=tiny_dir,
            out=out)  # fmt: skip
    metrics = run(cfg, base, problems=problems_file, policy=tiny_dir, out=out)
    assert metrics["steps"] == 1 and "reward_first" in metrics
    assert metrics == json.loads((tmp_path / "policy-rl.report" / "metrics.json").read_text())
    assert json.loads((out / "rwpipe-policy.json").read_text())["metrics"] == metrics
    assert not (tmp_path / "policy-rl.run").exists()


def test_stage_refuses_a_prm_reward_without_a_prm(tmp_path, tiny_dir, problems_file):
    params = _write_params(tmp_path / "params.yaml", rewards=RewardsConfig(prm=1.0))
    out = tmp_path / "policy-rl"
    result = run_rwpipe("rl", problems_file, tiny_dir, out, "-p", params, check=False)
    assert result.returncode == 1 and "needs --prm" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


# -- weight sync on the real model and engines ---------------------------------------------------


@pytest.mark.slow
def test_after_an_update_vllm_greedy_equals_the_transformers_policy(
    model_dir, hf_generator, vllm_generator
):
    from rwpipe.backends import SamplingParams
    from rwpipe.rl.policy import load_policy_model
    from rwpipe.rl.update import train_step

    cfg = _cfg(optim=OptimConfig(lr=2e-2, batch_size=4), kl_coef=0.0)
    policy = load_policy_model(model_dir, cfg, torch.device("cpu"), torch.float32)
    prompts = [hf_generator.chat_prompt(q) for q in ("What is 12 + 30?", "Name a prime.")]
    greedy = SamplingParams(temperature=0, max_new_tokens=24)
    before = vllm_generator.generate(prompts, greedy)
    # one real update: push up the first sample, down the second
    sampled = hf_generator.generate(prompts[:1], SamplingParams(n=2, max_new_tokens=16, seed=1))
    ids = [policy.tokenizer.encode(prompts[0], add_special_tokens=False)] * 2
    adv = [[1.0] * len(c.token_ids) for c in sampled[0][:1]] + [
        [-1.0] * len(sampled[0][1].token_ids)
    ]
    optimizer = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], 2e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    stats = train_step(policy, optimizer, scheduler, cfg, ids, sampled[0], adv)
    assert stats["grad_norm"] > 0
    merged = policy.merged_state_dict()
    original = {k: v.clone() for k, v in hf_generator.model.state_dict().items()}
    try:
        for g in (hf_generator, vllm_generator):
            g.update_weights(merged)
        hf, vllm = (g.generate(prompts, greedy) for g in (hf_generator, vllm_generator))
        assert [c[0].token_ids for c in vllm] == [c[0].token_ids for c in hf]
        assert [c[0].token_ids for c in vllm] != [c[0].token_ids for c in before]
    finally:
        for g in (hf_generator, vllm_generator):
            g.update_weights(original)


@pytest.mark.slow
def test_data_parallel_replicas_stay_identical(tmp_path, tiny_dir):
    """Two processes under torchrun (gloo on CPU), one prompt each: gradients averaged before
    every step, so both end with the same weights and report the same history."""
    import socket
    import subprocess
    import sys

    from tests.conftest import ROOT

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(port),
           str(ROOT / "tests" / "rl_dp_worker.py"), str(tiny_dir), str(tmp_path)]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["digest"] == r1["digest"]  # identical replicas
    assert r0["lora_b_norm"] > 0  # and they did move
    assert r0["history"] == r1["history"] and len(r0["history"]) == 2
    assert all(math.isfinite(h["loss"]) for h in r0["history"])


def test_rl_seed_overrides_the_base_seed_only_where_set():
    from rwpipe.config import BaseConfig
    from rwpipe.rl.session import rl_seed

    assert rl_seed(_cfg(seed=3), BaseConfig(seed=0)) == 3
    assert rl_seed(_cfg(), BaseConfig(seed=5)) == 5
    assert rl_seed(_cfg(seed=0), BaseConfig(seed=5)) == 0  # 0 is a seed, not "unset"
