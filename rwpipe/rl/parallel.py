"""Data parallelism for RL: this process's share of the prompts, gradient and statistic
averaging across processes (`accelerate launch` or `torchrun`)."""

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch


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

    def device(self, requested: str) -> torch.device:
        """accelerate's device for this process under data parallelism, else `base.device`."""
        if self.world > 1:
            from accelerate import PartialState

            return PartialState().device
        from rwpipe.runtime import pick_device

        return pick_device(requested)

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
        """The sum of `value` over processes."""
        return int(round(self.mean({"v": value})["v"] * self.world))

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
