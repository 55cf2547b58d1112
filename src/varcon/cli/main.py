"""Parse, call, print. Everything else lives in :mod:`varcon.engine`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

__all__ = ["main"]

EPILOG = """examples:
  varcon pretrain                                   # built-in quickstart: VarCon on digits, CPU
  varcon pretrain --config cifar10 data.root=/data/cifar optim.epochs=10
  torchrun --nproc_per_node=8 -m varcon pretrain --config imagenet1k data.root=/data/imagenet
  varcon pretrain --resume runs/digits-20261122-101500
  varcon linear --checkpoint runs/RUN/checkpoints/last.pt linear.epochs=20
overrides are key=value with dotted keys (optim.lr=0.1, data.augment_params.hflip_p=0)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="varcon", description="Variational supervised contrastive learning.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("pretrain", help="pre-train an encoder, then evaluate it",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    pre.add_argument("--config", help="YAML file or shipped config name (default: digits)")
    pre.add_argument("--output-dir", help="run directory (default runs/<name>-<timestamp>)")
    pre.add_argument("--resume", help="continue the run in this directory from its last.pt")
    pre.add_argument("overrides", nargs="*", metavar="key=value")
    lin = sub.add_parser("linear", help="linear evaluation of a checkpoint's encoder")
    lin.add_argument("--checkpoint", required=True, help="checkpoints/last.pt or a run dir")
    lin.add_argument("--output-dir", help="where linear.json goes (default: the run dir)")
    lin.add_argument("overrides", nargs="*", metavar="key=value")
    sub.add_parser("configs", help="list the shipped configs")
    return parser


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def _print_summary(summary: dict) -> None:
    rows = [(k, f"{v:.2f}" if isinstance(v, float) else str(v)) for k, v in summary.items()
            if k != "config"]
    print("\nresults\n" + _table(rows), flush=True)


def _pretrain(args: argparse.Namespace) -> int:
    from varcon.engine import config as C
    from varcon.engine.pretrain import pretrain
    from varcon.engine.rundir import resume_dir

    overrides = list(args.overrides)
    if args.resume:
        if args.config:
            raise C.ConfigError(["--resume continues a run with its own config.yaml; "
                                 "drop --config (overrides are still applied)"])
        run_dir = resume_dir(args.resume)
        config_file = run_dir / "config.yaml"
        if not config_file.is_file():
            raise C.ConfigError([f"--resume {args.resume}: no config.yaml in {run_dir}"])
        data = C.read_yaml(config_file)
        data["resume"] = str(run_dir)
        data["output_dir"] = str(run_dir)
    else:
        data = C.read_yaml(C.resolve_config_path(args.config or "digits"))
        if args.output_dir:
            data["output_dir"] = args.output_dir
    cfg = C.config_from_dict(C.apply_overrides(data, overrides))
    summary = pretrain(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_summary(summary)
    return 0


def _linear(args: argparse.Namespace) -> int:
    from varcon.engine.linear import linear_from_checkpoint

    summary = linear_from_checkpoint(args.checkpoint, args.overrides, args.output_dir)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_summary(summary)
    return 0


def _configs() -> int:
    from importlib import resources

    for path in sorted(Path(str(resources.files("varcon") / "configs")).glob("*.yaml")):
        first = path.read_text().splitlines()[0] if path.read_text() else ""
        print(f"{path.stem:20s} {first.lstrip('# ')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from varcon.engine import TrainingDiverged, TrainingInterrupted

    try:
        if args.command == "pretrain":
            return _pretrain(args)
        if args.command == "linear":
            return _linear(args)
        return _configs()
    except TrainingInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr, flush=True)
        return 128 + signal.SIGTERM
    except TrainingDiverged as exc:
        print(f"error: training diverged: {exc}", file=sys.stderr, flush=True)
        return 1
    except (ValueError, FileNotFoundError) as exc:  # ConfigError, CheckpointError, bad data
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
