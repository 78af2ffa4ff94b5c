"""The cost gate: measured throughput -> projected hours and dollars, checked before any step.

    throughput = bench tokens/s (per device) x devices   (linear scaling assumed)
    hours      = train.tokens / throughput / 3600
    cost       = hours x cost.hourly_rate x devices

`devices` is the run's world size (its process count, one device each): `cost.num_devices: null`
takes it, and a number that differs from it is refused (`devices()`). The bench record must have
been measured in the same parallel mode at the same world size (both are in the signature), so
its per-device tokens/s already includes the cost of the all-reduce or all-gathers.

A projection above `cost.max_cost` refuses the run with one message naming the params to change.
The throughput must have been measured (`runs/throughput.json`, the `bench` stage) for exactly the
setting about to run (model, micro-batch, context, precision, compile, device); otherwise the
gate fails closed (`cost.require_benchmark: true`). During training, `spent()` prices the
wall-clock time so far so the loop can stop at a checkpoint when it reaches `max_cost`.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from llmpipe.core.log import get_logger, n
from llmpipe.train.device import device_name
from llmpipe.params import CostParams

if TYPE_CHECKING:  # annotation only: importing the model here would pull torch into the gate
    from llmpipe.train.model import ModelConfig

log = get_logger("cost")


class CostGateError(UserError, RuntimeError):
    """The run would cost too much, or its cost cannot be projected."""


def _diff(measured: dict, expected: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(measured) | set(expected)):
        a, b = measured.get(k), expected.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: measured {a!r}, this run {b!r}")
    return out


def read_throughput(path: str | Path, signature: dict[str, Any]) -> float:
    """tokens/s from the bench record at `path`; CostGateError unless it matches `signature`."""
    path = Path(path)
    if not path.exists():
        raise CostGateError(f"cost gate: {path} not found, so the run's cost cannot be projected; "
                            "run `dvc repro bench` (or set cost.require_benchmark: false)")
    rec = json.loads(path.read_text(encoding="utf-8"))
    diffs = _diff(rec.get("signature", {}), signature)
    if diffs:
        raise CostGateError(f"cost gate: {path} was measured for a different setting ("
                            + "; ".join(diffs[:5]) + "); rerun `dvc repro bench` (`dvc repro -f bench` "
                            "when only the machine changed)")
    busy = rec.get("contention") or {}
    if busy.get("loaded"):  # priced from a contended figure: never silently
        log.warning("cost gate: %s was measured on a loaded machine (%s); the projection is pessimistic, "
                    "rerun `dvc repro -f bench` on a quiet machine for a true one", path, busy.get("why"))
    return float(rec["tokens_per_s"])


def devices(cp: CostParams, world: int) -> int:
    """Devices the run bills: its world size; CostGateError when cost.num_devices says otherwise."""
    if cp.num_devices is not None and cp.num_devices != world:
        raise CostGateError(f"cost.num_devices is {cp.num_devices} but this run has {world} process(es), "
                            f"one device each; set cost.num_devices: null (the run's world size) or {world}")
    return world


def project(tokens: int, tokens_per_s: float, cp: CostParams, num_devices: int = 1) -> dict[str, Any]:
    throughput = tokens_per_s * num_devices
    hours = tokens / throughput / 3600
    return {"tokens": tokens, "tokens_per_s_per_device": tokens_per_s, "num_devices": num_devices,
            "hourly_rate": cp.hourly_rate, "max_cost": cp.max_cost,
            "projected_hours": hours, "projected_cost": hours * cp.hourly_rate * num_devices}


def gate(tokens: int, throughput_path: str | Path, signature: dict[str, Any],
         cp: CostParams, num_devices: int = 1) -> Optional[dict[str, Any]]:
    """The projection if the run may start; CostGateError if not. None when the benchmark is
    missing or mismatched and `cost.require_benchmark` is false (logged, not silent)."""
    try:
        tps = read_throughput(throughput_path, signature)
    except CostGateError as e:
        if cp.require_benchmark:
            raise
        log.warning("%s; cost.require_benchmark is false, so the run starts unpriced", e)
        return None
    p = project(tokens, tps, cp, num_devices)
    if p["projected_cost"] > cp.max_cost:
        raise CostGateError(
            f"cost gate: training {n(tokens)} tokens at {n(round(tps))} tokens/s x {num_devices} "
            f"device(s) takes {p['projected_hours']:.3f} h and costs ${p['projected_cost']:.2f} at "
            f"${cp.hourly_rate:.2f}/device-hour, over cost.max_cost = ${cp.max_cost:.2f}. Lower "
            "train.tokens, raise cost.max_cost, or correct cost.hourly_rate "
            "(a smaller model.* or larger train.micro_batch changes the throughput; then rerun bench)")
    log.info("cost gate: %s tokens at %s tokens/s x %d -> %.3f h, $%.2f (max $%.2f)", n(tokens),
             n(round(tps)), num_devices, p["projected_hours"], p["projected_cost"], cp.max_cost)
    return p


def spent(seconds: float, cp: CostParams, num_devices: int = 1) -> float:
    """Dollars for `seconds` of wall-clock on all devices."""
    return seconds / 3600 * cp.hourly_rate * num_devices


def signature(cfg: ModelConfig, micro_batch: int, precision: str, compile: bool,
              device, parallel: str = "single", processes: int = 1, doc_mask: bool = False) -> dict[str, Any]:
    """The exact setting a throughput figure belongs to (`parallel`: llmpipe.train.parallel.mode;
    `doc_mask`: train.doc_mask's slower attention, in the signature only when on)."""
    return {"model": cfg.to_dict(), "micro_batch": micro_batch, "context": cfg.context,
            "precision": precision, "compile": compile, "device_type": device.type,
            "device_name": device_name(device), "parallel": parallel, "processes": processes,
            **({"doc_mask": True} if doc_mask else {})}
