"""`llmpipe` console entry for humans: verify, stats, generate, eval, export-hf, plan.

Each subcommand is a thin wrapper around one library function (imported lazily, so
`llmpipe verify` does not pay for importing torch). Exit status: 0 ok, 1 a check failed,
2 a usage or input error.
"""
from __future__ import annotations

import argparse
import sys

from llmpipe.core.errors import report, user_message


def _verify(a: argparse.Namespace) -> int:
    from llmpipe.data.tokens import verify_path
    return verify_path(a.path, tokenizer=a.tokenizer)


def _stats(a: argparse.Namespace) -> int:
    from llmpipe.data.tokens import stats_path
    return stats_path(a.path, as_json=a.json)


def _generate(a: argparse.Namespace) -> int:
    from llmpipe.eval.generate import cli_generate
    return cli_generate(a)


def _eval(a: argparse.Namespace) -> int:
    from llmpipe.eval.stream import cli_eval
    return cli_eval(a)


def _export_hf(a: argparse.Namespace) -> int:
    from llmpipe.eval.export import export_hf
    export_hf(a.run, a.out, tokenizer=a.tokenizer)
    return 0


def _plan(a: argparse.Namespace) -> int:
    from llmpipe.train.planner import cli_plan
    return cli_plan(a)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llmpipe", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    v = sub.add_parser("verify", help="check a token directory (or a .bin file with its meta.json)")
    v.add_argument("path", help="e.g. data/mix or data/tokens/c4")
    v.add_argument("--tokenizer", default=None,
                   help="spm.model whose fingerprint the tokens must match (default: the project's "
                        "artifacts/tokenizer/spm.model when it exists; 'none': only meta.json's own "
                        "sha256s are checked)")
    v.set_defaults(func=_verify)

    s = sub.add_parser("stats", help="token counts and per-source shares of a token directory")
    s.add_argument("path")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=_stats)

    g = sub.add_parser("generate", help="stream a continuation of a prompt from a trained model")
    g.add_argument("--model", default="runs/train", help="run directory with model.safetensors + config.json")
    g.add_argument("--tokenizer", default="artifacts/tokenizer/spm.model")
    g.add_argument("--prompt", required=True)
    g.add_argument("--chat", action="store_true",
                   help="the prompt is a user turn: render the chat template, print the assistant's reply")
    g.add_argument("--system", default=None, help="with --chat: a system message before the user turn")
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    g.add_argument("--top-k", type=int, default=50)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    g.set_defaults(func=_generate)

    t = sub.add_parser("eval", help="score held-out text files as streams: bits per byte with the model's full context")
    t.add_argument("--text", action="append", required=True, metavar="FILE", help="a UTF-8 text file (repeatable)")
    t.add_argument("--model", default="runs/train", help="run directory with model.safetensors + config.json")
    t.add_argument("--tokenizer", default="artifacts/tokenizer/spm.model")
    t.add_argument("--stride", type=int, default=0, help="tokens the window slides by; 0 = context / 4")
    t.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    t.add_argument("--metrics", default="metrics/eval.json",
                   help="the eval stage's metrics, whose per-source figures are printed beside (if it exists)")
    t.add_argument("--json", action="store_true", help="print JSON instead of lines")
    t.set_defaults(func=_eval)

    e = sub.add_parser("export-hf", help="write a folder transformers' Auto* classes load directly")
    e.add_argument("run", help="run directory, e.g. runs/train")
    e.add_argument("out", help="output folder")
    e.add_argument("--tokenizer", default="artifacts/tokenizer/spm.model")
    e.set_defaults(func=_export_hf)

    pl = sub.add_parser("plan", help="params, FLOPs/token, Chinchilla tokens and the tokens/hours/dollars of each "
                                     "training phase at the measured throughput")
    pl.add_argument("--params", default="params.yaml")
    pl.add_argument("--tokenizer", default="artifacts/tokenizer",
                    help="its tokenizer.json gives the vocab (else model.vocab_size or tokenizer.vocab_size)")
    pl.add_argument("--throughput", default="runs/throughput.json", help="the bench stage's measurement")
    pl.add_argument("--any-throughput", action="store_true",
                    help="use the measurement even if it was made for another model, batch or device")
    pl.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pl.set_defaults(func=_plan)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as e:  # noqa: BLE001 - re-raised unless it is a user error
        if user_message(e) is None:
            raise
        return report(f"llmpipe {args.cmd}", e)


if __name__ == "__main__":
    sys.exit(main())
