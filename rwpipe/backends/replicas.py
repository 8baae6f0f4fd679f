"""Engine replicas: `data_parallel_size` copies of one engine, each in its own process.

vLLM's offline `LLM` refuses `data_parallel_size > 1` ("not supported for single-process
usage"): its data parallelism belongs to `vllm serve` and to launcher-managed ranks. rwpipe's
stages hold one in-process engine, so `ReplicaGenerator` provides the replicas itself, for
either engine:

- **Workers.** N processes, started with `spawn` (a loaded torch or CUDA does not survive
  `fork`), each loading the engine through `load_generator` with one replica's share of the
  machine: a contiguous group of the CPU cores this process may use (all of them, one thread
  each, when there are fewer cores than replicas), or on CUDA GPUs `[k * tp, (k + 1) * tp)` of
  the visible ones (`CUDA_VISIBLE_DEVICES`; too few GPUs is a ConfigError).
- **Calls.** `generate` cuts the prompts into N contiguous chunks of near-equal size (replica k
  takes chunk k), and concatenates the results in prompt order. A worker generates its chunk
  with `first_index` = the chunk's start, so prompt i samples from
  `request_seed(engine_seed, call_seed, i)` as in one engine. The outputs are therefore the
  one engine's up to float rounding: a chunk's batch shape, and the fewer threads a replica
  computes on, change the last bits of the logprobs (and can, rarely, flip a sampled token; see
  `rwpipe.backends`). Overlong prompts are refused here, before any replica starts work.
  Progress from every replica is forwarded to the caller's `progress`.
- **Weights.** `update_weights` sends the state dict (copied to CPU, pickled by value: no
  shared memory, whose size containers often cap) to every replica and waits for all of them.
- **Errors.** A replica's error is re-raised here once every replica has answered, so the
  next call starts clean; an interrupt or a dead worker shuts every replica down.
"""

import multiprocessing
import multiprocessing.util
import os
import pickle
import signal
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from rwpipe.backends import (
    Completion,
    ProgressFn,
    SamplingParams,
    apply_chat_template,
    check_prompt_lengths,
    load_generator,
)
from rwpipe.errors import ConfigError, RwpipeError

if TYPE_CHECKING:
    import torch

_CLOSE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class _Replica:
    """What worker `index` loads, and the share of the machine it may use."""

    index: int
    model_dir: str
    backend: str
    device: str
    dtype: str
    seed: int
    engine_kwargs: dict[str, Any]
    cpus: tuple[int, ...] | None = None  # CPU affinity; None: unchanged
    threads: int | None = None  # torch intra-op threads; None: torch's default
    env: dict[str, str] = field(default_factory=dict)  # e.g. CUDA_VISIBLE_DEVICES


class ReplicaGenerator:
    """`replicas` copies of one engine in worker processes, behind the `Generator` interface.

    Args:
        model_dir: local transformers model directory.
        backend: "vllm" or "hf": the engine each replica runs.
        replicas: number of engine copies (>= 2).
        device, dtype, seed: as for `load_generator`; every replica gets the same seed.
        **engine_kwargs: passed to every replica's engine (see `HFGenerator`, `VLLMGenerator`).
    """

    def __init__(self, model_dir: str, backend: str, replicas: int, *, device: str = "auto",
                 dtype: str = "auto", seed: int = 0, **engine_kwargs: Any) -> None:  # fmt: skip
        if replicas < 2:
            raise ValueError(f"replicas must be >= 2, got {replicas}")
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.dtype = dtype if dtype != "auto" else _auto_dtype(device)
        plan = _plan(model_dir, backend, replicas, device, dtype, seed, engine_kwargs)
        self._conns: list[Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._finalizer = multiprocessing.util.Finalize(
            self, _stop, args=(self._procs, self._conns), exitpriority=10
        )
        ctx = multiprocessing.get_context("spawn")
        try:
            for replica in plan:
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(child, replica),
                                   name=f"rwpipe-replica-{replica.index}")  # fmt: skip
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
            limits = self._gather(dict.fromkeys(range(replicas)), None, "start")
        except BaseException:
            self.close()
            raise
        self.max_model_len = min(limits.values())

    @property
    def replicas(self) -> int:
        return len(self._conns)

    def chat_prompt(self, question: str, system: str | None = None) -> str:
        """The chat template applied to one user turn, generation prompt added, as text."""
        return apply_chat_template(self.tokenizer, question, system)

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        progress: ProgressFn | None = None,
    ) -> list[list[Completion]]:
        """`params.n` completions per prompt, in prompt order, from every replica at once."""
        if not prompts:
            return []
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        check_prompt_lengths(encoded, self.max_model_len)
        chunks = _chunks(len(prompts), self.replicas)
        messages = {
            k: ("generate", (list(prompts[start:stop]), params, start, progress is not None))
            for k, (start, stop) in enumerate(chunks)
            if stop > start
        }
        results = self._gather(messages, progress, "generate")
        return [row for k in sorted(results) for row in results[k]]

    def update_weights(self, state_dict: Mapping[str, "torch.Tensor"]) -> None:
        """Load new weights (transformers names and shapes) into every replica."""
        weights = {name: t.detach().cpu() for name, t in state_dict.items()}
        self._gather(dict.fromkeys(range(self.replicas), ("update", weights)), None, "update")

    def close(self) -> None:
        """Close every replica's engine and end its process."""
        self._finalizer()

    def _gather(self, messages: dict[int, Any], progress: ProgressFn | None,
                what: str) -> dict[int, Any]:  # fmt: skip
        """Send `messages[k]` to replica k (None: send nothing, just wait), then collect one
        answer from each, forwarding progress; re-raise the first replica error."""
        if not self._finalizer.still_active():
            raise RuntimeError("the engine replicas are closed")
        results: dict[int, Any] = {}
        errors: list[tuple[int, BaseException, str]] = []
        try:
            blobs: dict[int, bytes] = {}  # one pickle per distinct message (update: the weights)
            for k, message in messages.items():
                if message is not None:
                    if id(message) not in blobs:
                        blobs[id(message)] = _dumps(message)
                    self._conns[k].send_bytes(blobs[id(message)])
            pending = {self._conns[k]: k for k in messages}
            while pending:
                for conn in wait(list(pending)):
                    k = pending[conn]
                    kind, payload = _receive(conn, k, self._procs[k])
                    if kind == "progress":
                        if progress is not None:
                            progress(*payload)
                        continue
                    del pending[conn]
                    if kind == "error":
                        errors.append((k, *payload))
                    else:
                        results[k] = payload
        except BaseException:
            # An interrupt or a dead replica, with answers still on the way: the replicas
            # cannot be reused, and a busy one would only take the close after its work.
            for proc in self._procs:
                proc.terminate()
            self.close()
            raise
        if errors:
            k, exc, remote = errors[0]
            if isinstance(exc, RwpipeError):
                raise exc
            raise RuntimeError(f"engine replica {k} failed to {what}:\n{remote}") from exc
        return results


def _plan(model_dir: str, backend: str, replicas: int, device: str, dtype: str, seed: int,
          engine_kwargs: dict[str, Any]) -> list[_Replica]:  # fmt: skip
    """One `_Replica` per worker: the same engine, a disjoint share of the cores or GPUs."""
    common = {"model_dir": model_dir, "backend": backend, "device": device, "dtype": dtype,
              "seed": seed, "engine_kwargs": engine_kwargs}  # fmt: skip
    if _on_cuda(device):
        tp = int(engine_kwargs.get("tensor_parallel_size", 1)) if backend == "vllm" else 1
        gpus = _visible_gpus()
        if len(gpus) < replicas * tp:
            raise ConfigError(
                f"engine.vllm.data_parallel_size = {replicas} replicas x {tp} GPUs each needs "
                f"{replicas * tp} GPUs; {len(gpus)} visible"
            )
        groups = [gpus[k * tp : (k + 1) * tp] for k in range(replicas)]
        return [
            _Replica(k, **common, env={"CUDA_VISIBLE_DEVICES": ",".join(g)})
            for k, g in enumerate(groups)
        ]
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < replicas:  # more replicas than cores: share them all, one thread each
        return [_Replica(k, **common, threads=1) for k in range(replicas)]
    groups = [cores[start:stop] for start, stop in _chunks(len(cores), replicas)]
    return [_Replica(k, **common, cpus=tuple(g), threads=len(g)) for k, g in enumerate(groups)]


def _chunks(total: int, parts: int) -> list[tuple[int, int]]:
    """`parts` contiguous (start, stop) ranges covering range(total), sizes differing by <= 1."""
    size, extra = divmod(total, parts)
    bounds = [k * size + min(k, extra) for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _on_cuda(device: str) -> bool:
    if device == "cpu":
        return False
    import torch

    return torch.cuda.is_available()


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


# ----------------------------------------------------------------------------------------------
# Messages: pickled by value both ways (tensors included), never through shared memory


def _dumps(message: Any) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def _send(conn: Connection, message: Any) -> None:
    conn.send_bytes(_dumps(message))


def _receive(conn: Connection, index: int, proc: Any) -> tuple[str, Any]:
    try:
        return pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):
        proc.join(timeout=5)
        raise RuntimeError(
            f"engine replica {index} exited unexpectedly (exit code {proc.exitcode})"
        ) from None


def _stop(procs: list[Any], conns: list[Connection]) -> None:
    """Ask every replica to close its engine, wait, and end the ones that do not."""
    for conn in conns:
        try:
            _send(conn, ("close", None))
        except (OSError, ValueError):
            pass  # already gone
    for proc in procs:
        proc.join(timeout=_CLOSE_TIMEOUT_S)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    for conn in conns:
        conn.close()


# ----------------------------------------------------------------------------------------------
# The worker process


def _serve(conn: Connection, replica: _Replica) -> None:
    """A replica's main loop: load the engine, then answer generate/update/close messages."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.environ.update(replica.env)
    if replica.cpus is not None:
        os.sched_setaffinity(0, replica.cpus)
    try:
        import torch

        kwargs = dict(replica.engine_kwargs)
        if replica.threads is not None:
            torch.set_num_threads(replica.threads)
            if replica.backend == "vllm":
                kwargs.setdefault("threads", replica.threads)
        generator: Any = load_generator(replica.model_dir, replica.backend,  # type: ignore[arg-type]
                                        device=replica.device, dtype=replica.dtype,
                                        seed=replica.seed, **kwargs)  # fmt: skip
    except BaseException as exc:
        _send(conn, ("error", _portable(exc)))
        return
    _send(conn, ("ready", generator.max_model_len))
    while True:
        try:
            kind, payload = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):  # the parent is gone
            break
        if kind == "close":
            generator.close()
            break
        try:
            result = _handle(conn, generator, kind, payload)
        except Exception as exc:
            _send(conn, ("error", _portable(exc)))
        else:
            _send(conn, ("done", result))
    conn.close()


def _handle(conn: Connection, generator: Any, kind: str, payload: Any) -> Any:
    if kind == "generate":
        prompts, params, first_index, report = payload
        progress = (lambda p, t: _send(conn, ("progress", (p, t)))) if report else None
        return generator.generate(prompts, params, progress, first_index=first_index)
    if kind == "update":
        generator.update_weights(payload)
        return None
    raise ValueError(f"unknown message {kind!r}")


def _portable(exc: BaseException) -> tuple[BaseException, str]:
    """(the exception, or a RuntimeError with its text when it does not unpickle; traceback)."""
    remote = "".join(traceback.format_exception(exc))
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        exc = RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc, remote


def _auto_dtype(device: str) -> str:
    """What "auto" resolves to in every replica (`rwpipe.runtime.default_dtype`)."""
    from rwpipe.runtime import default_dtype, pick_device

    return str(default_dtype(pick_device(device))).removeprefix("torch.")
