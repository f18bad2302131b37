"""DistributedDataParallel under ``torchrun``: gloo on CPUs, NCCL on GPUs; rank 0 alone writes.

``torchrun`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``; without
them this is a one-process run and nothing here touches ``torch.distributed``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: object = None  # torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model):
        from torch.nn.parallel import DistributedDataParallel

        if self.device.type == "cuda":
            return DistributedDataParallel(model, device_ids=[self.device.index])
        return DistributedDataParallel(model)

    def sum(self, tensor):
        """Sum a small CPU tensor over the ranks (the metrics of an epoch)."""
        import torch.distributed as td

        if self.world == 1:
            return tensor
        t = tensor.to(self.device)
        td.all_reduce(t, op=td.ReduceOp.SUM)
        return t.cpu()

    def barrier(self) -> None:
        import torch.distributed as td

        if self.world > 1:
            if self.device.type == "cuda":
                td.barrier(device_ids=[self.device.index])
            else:
                td.barrier()

    def close(self) -> None:
        import torch.distributed as td

        if self.world > 1 and td.is_initialized():
            td.destroy_process_group()


def under_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def setup() -> Dist:
    """Join the process group when started by ``torchrun`` (gloo on CPU, NCCL on GPU)."""
    from imgpipe.torchenv import choose_device

    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Dist(device=choose_device(0))
    import torch.distributed as td

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(local_rank)
    if device.type == "cuda":
        import torch

        torch.cuda.set_device(device)
    td.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return Dist(rank=rank, world=world, local_rank=local_rank, device=device)


def torchrun_argv(nproc: int, module: str) -> list[str]:
    """The command that reruns ``python -m module`` under torchrun on this node with ``nproc`` workers."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", module]
