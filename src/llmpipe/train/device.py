"""Where a run executes: device and precision choice, autocast, device names and peak FLOP/s.

Kept apart from training so `bench` and `train` resolve "auto" identically: the cost gate
compares what bench measured with what train is about to run, field by field.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError

import contextlib
import platform
import time
from typing import Iterator

import torch

# Datasheet dense (no sparsity) bf16 tensor-core peaks, FLOP/s; matched by substring of the
# CUDA device name, most specific first.
GPU_BF16_PEAK: list[tuple[str, float]] = [
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12),
    ("GH200", 989e12), ("B200", 2250e12), ("A100", 312e12), ("A10G", 70e12), ("A10", 125e12),
    ("L40S", 362e12), ("L4", 121e12), ("RTX 4090", 165e12), ("RTX 3090", 71e12), ("V100", 125e12),
    ("T4", 65e12),
]


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(name: str = "auto", *, key: str = "train.device", mps: bool = False) -> torch.device:
    """The one device resolver. `auto`: CUDA if torch sees one, else Apple's MPS when `mps` (eval
    and generate allow it; training does not), else CPU. `key` names the param in errors."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps and _mps_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{key}: cuda asked for but torch sees no CUDA device")
    if name == "mps" and not (mps and _mps_available()):
        raise UserError(f"{key}: mps asked for but {'torch sees no MPS device' if mps else 'training runs on cpu or cuda'}")
    return torch.device(name)


def configure_matmul(device: torch.device) -> None:
    """TF32 for fp32 matmuls on CUDA. Called by both bench and train, so the throughput the cost
    gate projects from is measured with the same kernels training runs."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' on a CUDA device with bf16 support, else 'fp32'."""
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for matmuls (weights and optimizer stay float32), or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_peak_flops(name: str) -> float | None:
    for key, peak in GPU_BF16_PEAK:
        if key in name:
            return peak
    return None


def measure_matmul_peak(device: torch.device, n: int = 1024, dtype: torch.dtype = torch.float32,
                        reps: int = 5) -> float:
    """Best-of-`reps` FLOP/s of an n x n x n matmul: the practical peak of this device/dtype."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up (thread pool, kernels)
    best = float("inf")
    for _ in range(reps):
        synchronize(device)
        t = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def peak_flops(device: torch.device, precision: str, matmul_size: int = 1024) -> tuple[float, str]:
    """(peak FLOP/s, where it came from): datasheet for known GPUs, else a measured matmul."""
    if device.type == "cuda":
        peak = gpu_peak_flops(device_name(device))
        if peak is not None:
            return peak, "datasheet dense bf16"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    return measure_matmul_peak(device, matmul_size, dtype), f"measured {matmul_size}^3 {dtype} matmul"


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op threads (None: leave as is)."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
