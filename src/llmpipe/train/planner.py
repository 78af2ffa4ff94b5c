"""The compute planner: model size, FLOPs per token, Chinchilla-optimal tokens, and the tokens,
hours and dollars each phase of the plan uses at the measured throughput (`llmpipe plan`, and
the `plan` block of each train stage's cost.json).

    params            llmpipe.train.model.param_counts (embeddings included)
    FLOPs per token   6 N + 12 L d T (llmpipe.train.model.flops_per_token)
    Chinchilla        plan.tokens_per_param x params (Hoffmann et al. 2022: ~20)
    hours             tokens / (bench tokens/s per device x devices) / 3600
    dollars           hours x cost.hourly_rate x devices

A phase's tokens are those it will run: whole batches (train.tokens rounds up to a batch), at
most train.max_steps batches, as the cost gate prices them.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Optional

from llmpipe.core.log import get_logger, n
from llmpipe.train.model import flops_per_token, param_counts

log = get_logger("cost")


def model_figures(cfg, tokens_per_param: float) -> dict[str, int]:
    pc = param_counts(cfg)
    return {"params": pc["total"], "non_embedding_params": pc["non_embedding"],
            "flops_per_token": flops_per_token(cfg), "chinchilla_tokens": round(tokens_per_param * pc["total"])}


def run_tokens(tokens: int, batch_tokens: int, max_steps: Optional[int]) -> int:
    steps = math.ceil(tokens / batch_tokens)
    return min(steps, max_steps or steps) * batch_tokens


def price(tokens: int, tokens_per_s: Optional[float], hourly_rate: float, devices: int) -> dict[str, Any]:
    if not tokens_per_s:
        return {"tokens": tokens, "hours": None, "cost": None}
    hours = tokens / (tokens_per_s * devices) / 3600
    return {"tokens": tokens, "hours": hours, "cost": hours * hourly_rate * devices}


def phase_tokens(params) -> list[tuple[str, int]]:
    """[(phase, tokens it will run)], the base `train` first, then `phases` in file order."""
    tp = params.train
    rows = [("train", run_tokens(tp.tokens, tp.batch_tokens, tp.max_steps))]
    for name, ph in params.phases.items():
        rows.append((name, run_tokens(ph.train.tokens, ph.train.batch_tokens or tp.batch_tokens, tp.max_steps)))
    return rows


def plan_report(params, cfg, tokens_per_s: Optional[float], devices: int) -> dict[str, Any]:
    """The whole plan: model figures, then tokens/hours/dollars per phase and cumulative."""
    cp = params.cost
    rows, total = [], 0
    for name, tokens in phase_tokens(params):
        total += tokens
        rows.append({"phase": name, **price(tokens, tokens_per_s, cp.hourly_rate, devices),
                     "cumulative": price(total, tokens_per_s, cp.hourly_rate, devices)})
    fig = model_figures(cfg, params.plan.tokens_per_param)
    return {**fig, "tokens_per_s_per_device": tokens_per_s, "num_devices": devices,
            "hourly_rate": cp.hourly_rate, "max_cost_per_phase": cp.max_cost, "max_plan_cost": params.plan.max_cost,
            "phases": rows, "total": price(total, tokens_per_s, cp.hourly_rate, devices),
            "tokens_vs_chinchilla": total / fig["chinchilla_tokens"] if fig["chinchilla_tokens"] else None,
            "flops": total * fig["flops_per_token"]}


def phase_gate(cfg, plan_params, projection: Optional[dict], tokens_before: int, name: str) -> dict[str, Any]:
    """The `plan` block of a train stage's cost.json: model figures, this phase's projection and
    the plan's so far (the tokens counted in earlier phases + this one's). CostGateError when the
    plan so far is projected over plan.max_cost."""
    from llmpipe.train.cost import CostGateError

    out: dict[str, Any] = {"phase": name, **model_figures(cfg, plan_params.tokens_per_param),
                           "tokens_before": tokens_before}
    if projection is None:
        return out
    tps, dev, rate = projection["tokens_per_s_per_device"], projection["num_devices"], projection["hourly_rate"]
    so_far = price(tokens_before + projection["tokens"], tps, rate, dev)
    out.update({"phase_tokens": projection["tokens"], "phase_hours": projection["projected_hours"],
                "phase_cost": projection["projected_cost"], "plan_tokens_so_far": so_far["tokens"],
                "plan_hours_so_far": so_far["hours"], "plan_cost_so_far": so_far["cost"],
                "max_plan_cost": plan_params.max_cost})
    log.info("cost gate: the plan up to phase %s: %s tokens (%s before it), %.3f h, $%.2f (plan.max_cost %s); "
             "Chinchilla-optimal ~%s tokens for %s params", name, n(so_far["tokens"]), n(tokens_before),
             so_far["hours"], so_far["cost"], "none" if plan_params.max_cost is None else f"${plan_params.max_cost:.2f}",
             n(out["chinchilla_tokens"]), n(out["params"]))
    if plan_params.max_cost is not None and so_far["cost"] > plan_params.max_cost:
        raise CostGateError(
            f"cost gate: the plan up to phase {name!r} ({n(so_far['tokens'])} tokens: {n(tokens_before)} "
            f"before it + {n(projection['tokens'])} in it) is projected at ${so_far['cost']:.2f}, over "
            f"plan.max_cost = ${plan_params.max_cost:.2f}. Lower this phase's tokens, raise plan.max_cost, "
            "or see `llmpipe plan`")
    return out


def throughput_for(path: Path, signature: Optional[dict]) -> tuple[Optional[float], str]:
    """(tokens/s per device, where it came from) from runs/throughput.json; None when missing or
    measured for another setting (the planner then prints tokens and FLOPs only)."""
    if not path.is_file():
        return None, f"{path} not found (run `dvc repro bench`): hours and dollars left out"
    rec = json.loads(path.read_text(encoding="utf-8"))
    if signature is not None:
        from llmpipe.train.cost import _diff

        diffs = _diff(rec.get("signature", {}), signature)
        if diffs:
            return None, f"{path} was measured for another setting ({diffs[0]}): rerun `dvc repro bench`"
    return float(rec["tokens_per_s"]), f"measured: {path}"


def plan_lines(rep: dict[str, Any], source: str) -> list[str]:
    """`llmpipe plan`'s table."""
    def money(v):
        return "-" if v is None else f"${v:,.2f}" if v >= 1 else f"${v:.4f}"

    def hours(v):
        return "-" if v is None else f"{v:,.3f} h"

    out = [f"model: {n(rep['params'])} params ({n(rep['non_embedding_params'])} non-embedding), "
           f"{n(rep['flops_per_token'])} FLOPs/token; Chinchilla-optimal ~{n(rep['chinchilla_tokens'])} tokens",
           f"throughput: {'-' if rep['tokens_per_s_per_device'] is None else n(round(rep['tokens_per_s_per_device']))}"
           f" tokens/s per device x {rep['num_devices']} ({source}); ${rep['hourly_rate']:.2f}/device-hour",
           f"{'phase':<16}{'tokens':>14}{'hours':>12}{'dollars':>11}{'cumulative':>14}{'cum. $':>11}"]
    for r in rep["phases"]:
        out.append(f"{r['phase']:<16}{n(r['tokens']):>14}{hours(r['hours']):>12}{money(r['cost']):>11}"
                   f"{n(r['cumulative']['tokens']):>14}{money(r['cumulative']['cost']):>11}")
    t = rep["total"]
    out.append(f"total: {n(t['tokens'])} tokens ({rep['tokens_vs_chinchilla']:.3g}x Chinchilla), "
               f"{rep['flops']:.3g} FLOPs, {hours(t['hours'])}, {money(t['cost'])}")
    return out


def cli_plan(a) -> int:
    """`llmpipe plan`: print the plan; exit 1 when it is projected over a cost limit."""
    from llmpipe.data.tokenizer import read_info
    from llmpipe.params import load_params
    from llmpipe.train.cost import signature
    from llmpipe.train.device import resolve_device, resolve_precision
    from llmpipe.train.model import model_config
    from llmpipe.train.parallel import mode

    params = load_params(a.params)
    vocab = params.model.vocab_size or params.tokenizer.vocab_size
    tok = Path(a.tokenizer) / "tokenizer.json"
    if tok.is_file():
        vocab = read_info(a.tokenizer)["vocab_size"]
    cfg = model_config(params.model, vocab)
    devices = params.cost.num_devices or 1
    sig = None
    if not a.any_throughput:
        device = resolve_device(params.train.device)
        sig = signature(cfg, params.train.micro_batch, resolve_precision(params.train.precision, device),
                        params.train.compile, device, mode(params.train.parallel, devices), devices)
    tps, source = throughput_for(Path(a.throughput), sig)
    rep = plan_report(params, cfg, tps, devices)
    if a.json:
        print(json.dumps({**rep, "throughput_source": source}, indent=2))
    else:
        print("\n".join(plan_lines(rep, source)))
    over = [r["phase"] for r in rep["phases"] if r["cost"] is not None and r["cost"] > params.cost.max_cost]
    total = rep["total"]["cost"]
    if over or (params.plan.max_cost is not None and total is not None and total > params.plan.max_cost):
        why = (f"phase(s) {', '.join(over)} over cost.max_cost ${params.cost.max_cost:.2f}" if over else
               f"the plan's ${total:.2f} over plan.max_cost ${params.plan.max_cost:.2f}")
        print(f"plan: {why}; the train stages' cost gate will refuse it", file=sys.stderr)
        return 1
    return 0
