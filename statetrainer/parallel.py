"""Data parallel through PyTorch's own engine: ``torch.distributed`` launched by ``torchrun``."""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    """True when RANK, WORLD_SIZE and LOCAL_RANK are set (torchrun sets them)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def world_size() -> int:
    """Processes in the job (1 without torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 without torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Rank 0 alone writes logs, status, checkpoints and model files."""
    return rank() == 0


def init_process_group(backend: str | None = None, timeout_s: float = 120.0) -> bool:
    """Initialise the default process group from torchrun's environment; returns whether it did.

    NCCL on CUDA, gloo on CPU. Asking for NCCL without CUDA is an error.
    """
    import datetime

    if not launched_by_torchrun() or not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        from statetrainer._errors import ConfigurationError

        raise ConfigurationError("backend 'nccl' needs CUDA, and this machine has none; use backend='gloo'")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    # The timeout bounds every collective: a rank that died cannot hang the others forever.
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    import atexit

    atexit.register(destroy)  # also after a failure that never reaches the caller's cleanup
    return True


def build_parallel_model(trainer: Any) -> None:
    """Default ``build_parallel_model``: ``build_model()``, then wrap in DDP under torchrun.

    Without torchrun, or with a world size of 1, the plain model is kept with a warning.
    """
    trainer.build_model()
    if not launched_by_torchrun() or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        warnings.warn(
            "build_parallel_model(): not launched by torchrun with WORLD_SIZE >= 2; "
            "training the plain model in one process",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    init_process_group()
    model = trainer.model
    if not isinstance(model, torch.nn.Module):
        return
    if torch.cuda.is_available() and dist.get_backend() == "nccl":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        model = model.to(device)
        trainer.model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    else:
        trainer.model = torch.nn.parallel.DistributedDataParallel(model)


def destroy() -> None:
    """Destroy the default process group if one is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def distributed() -> bool:
    """True when a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def distribute_loader(loader: Any, seed: int = 0) -> Any:
    """The same DataLoader with a ``DistributedSampler`` (each rank gets its shard).

    Shuffling is kept if the loader shuffled; ``set_epoch`` is called by the trainer at
    each epoch. Anything that is not a plain DataLoader is returned unchanged.
    """
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    if not distributed() or not isinstance(loader, DataLoader) or isinstance(loader.sampler, DistributedSampler):
        return loader
    if loader.batch_size is None:
        warnings.warn("distribute_loader(): a custom batch_sampler cannot be sharded; every rank sees all data",
                      RuntimeWarning, stacklevel=2)
        return loader
    sampler: DistributedSampler[Any] = DistributedSampler(
        loader.dataset, shuffle=isinstance(loader.sampler, RandomSampler), seed=seed, drop_last=loader.drop_last
    )
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=loader.num_workers,
        collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
        timeout=loader.timeout, worker_init_fn=loader.worker_init_fn, generator=loader.generator,
        persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False,
    )


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (one small all-reduce)."""
    return any_ranks([flag])[0]


def any_ranks(flags: list[bool]) -> list[bool]:
    """Each flag true on every rank when it is true on any rank (one small all-reduce for all)."""
    if not distributed():
        return list(flags)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([1 if f else 0 for f in flags], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return [bool(v) for v in value.tolist()]
