"""How a run spreads over processes: one process, DDP, or FSDP2 (`train.parallel`).

    world 1          a plain module, whatever train.parallel says
    ddp              every process holds the whole model and optimizer; gradients all-reduced
                     (accelerate's `prepare_model`, torch DistributedDataParallel)
    fsdp             FSDP2 (`torch.distributed.fsdp.fully_shard`) on every transformer block and
                     on the root (embeddings, final norm, lm_head): each process keeps 1/world of
                     every parameter, gradient and AdamW moment as DTensor shards (dim 0), and
                     all-gathers a block's weights just before its forward and backward

The weights stay float32 under FSDP as under DDP (no `MixedPrecisionPolicy`): `train.precision:
bf16` is the same autocast in every mode, so DDP, FSDP and one process follow the same trajectory.

Checkpoints are mode- and world-independent: the shards are gathered into full tensors
(`gather`, rank 0 keeps them) and written in the one-process safetensors format; a resume reads
full tensors on every process and cuts out its shard (`shard_like`, no communication). So a
checkpoint saved by 2 FSDP processes loads on 1, on 4, or under DDP (docs/DESIGN-NOTES.md).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from llmpipe.core.errors import UserError


def mode(parallel: str, world: int) -> str:
    """The mode that actually runs: `single` on one process, else `train.parallel`."""
    return parallel if world > 1 else "single"


def world_info() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """FSDP2 in place: each block, then the root (whatever no block owns). Returns the model."""
    from torch.distributed.device_mesh import init_device_mesh

    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError:  # public (and with distribute_tensor's src_data_rank) from torch 2.6
        raise UserError(f"train.parallel: fsdp needs FSDP2 (torch >= 2.6), this is torch {torch.__version__}; "
                        "upgrade torch or use train.parallel: ddp") from None

    mesh = init_device_mesh(device.type, (world_info()[1],))
    for block in model.model.layers:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _is_dtensor(t: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def local(t: torch.Tensor) -> torch.Tensor:
    """This process's part of `t` (its shard for a DTensor, else `t`)."""
    return t.to_local() if _is_dtensor(t) else t


def scalar(t: torch.Tensor) -> float:
    """A float of a (possibly replicated DTensor) 0-d tensor, e.g. clip_grad_norm_'s result."""
    return float(t.full_tensor() if _is_dtensor(t) else t)


def gather(state: Mapping[str, Any], keep: bool) -> dict[str, Any]:
    """Full CPU tensors of a (possibly sharded) state dict. Every process must call it, in the
    same order (each DTensor is an all-gather); only where `keep` (rank 0) is the result kept,
    so host memory holds one full copy, and device memory one full tensor at a time."""
    out = {}
    for k, v in state.items():
        if _is_dtensor(v):
            v = v.full_tensor()
        if keep:
            out[k] = v.detach().to("cpu") if torch.is_tensor(v) else v
    return out


def gather_optimizer(opt_state: dict, keep: bool) -> dict:
    """`gather` over an optimizer state_dict ({'state': {idx: {name: tensor}}, 'param_groups'})."""
    state = {idx: gather(entries, keep) for idx, entries in opt_state["state"].items()}
    return {"state": state, "param_groups": opt_state["param_groups"]} if keep else {}


def shard_like(full: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """`full` cut like `ref`: a DTensor with ref's mesh and placements (each process takes its
    own chunk of the full tensor it already holds: `src_data_rank=None`, no communication), or
    `full` itself when `ref` is a plain tensor."""
    if not _is_dtensor(ref):
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.to(ref.device, ref.dtype), ref.device_mesh, ref.placements,
                             src_data_rank=None)


def shard_state(full: Mapping[str, torch.Tensor], like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: shard_like(v, like[k]) if k in like else v for k, v in full.items()}


def shard_optimizer(full: dict, opt: torch.optim.Optimizer) -> dict:
    """A full (index-keyed) optimizer state cut like `opt`'s parameters: a moment shaped like
    its parameter is sharded like it; scalars (AdamW's `step`) stay whole."""
    params = [p for g in opt.param_groups for p in g["params"]]
    state = {}
    for idx, entries in full["state"].items():
        p = params[int(idx)]
        state[idx] = {name: shard_like(v, p) if torch.is_tensor(v) and v.shape == p.shape else v
                      for name, v in entries.items()}
    return {"state": state, "param_groups": full["param_groups"]}
