"""Parse, call, print. Training lives in :mod:`varcon.engine`, evaluation in
:mod:`varcon.evaluation`, figures and reports in :mod:`varcon.reporting`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the command line starts without them
    from varcon.runtime.config import Config
    from varcon.runtime.logger import RunLogger

__all__ = ["main"]

EPILOG = """examples:
  varcon pretrain                                   # built-in quickstart: VarCon on digits, CPU
  varcon pretrain --config cifar10 data.root=/data/cifar optim.epochs=10
  torchrun --nproc_per_node=8 -m varcon pretrain --config imagenet1k data.root=/data/imagenet
  varcon pretrain --resume runs/digits-20261122-101500
  varcon linear --checkpoint runs/RUN linear.epochs=20
  varcon knn --checkpoint runs/RUN knn.k=[10,20,200]
  varcon finetune --checkpoint runs/RUN finetune.epochs=30 finetune.encoder_lr_scale=0.1
  varcon fewshot --checkpoint runs/RUN fewshot.episodes=600
  varcon transfer --checkpoint runs/RUN data.dataset=cifar100 data.root=/data/cifar100
  varcon robustness --checkpoint runs/RUN --baseline runs/CE_RUN
  varcon export --checkpoint runs/RUN --output exported/RUN --head
  varcon embed --checkpoint exported/RUN --input photos/ --output photos.parquet
  varcon embed --checkpoint runs/RUN --input cifar10:test data.root=/data/cifar --output e.npz
  varcon figures --checkpoint runs/RUN              # or: varcon figures runs/RUN
  varcon report runs/VARCON runs/SUPCON runs/CE --output reports/cmp
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
    _add_evaluation_parsers(sub)
    fig = sub.add_parser("figures", help="PNG figures of a run (tau2, curves, t-SNE, ...)")
    fig.add_argument("run_dir", nargs="?", metavar="RUN_DIR",
                     help="the run directory (or give it as --checkpoint)")
    fig.add_argument("--checkpoint", metavar="RUN_DIR",
                     help="the run directory, or a checkpoint file in it, as the evaluation "
                     "commands take it (instead of RUN_DIR)")
    fig.add_argument("--output-dir", help="default: RUN_DIR/figures")
    rep = sub.add_parser("report", help="Markdown + HTML report putting runs side by side")
    rep.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    rep.add_argument("--output", required=True, help="folder for report.md and report.html")
    rep.add_argument("--figures", choices=("groups", "all", "curves", "none"), default="groups",
                     help="the groups' training curves and the figures of the first run of "
                     "each group (default), of every run, only the training curves, or none")
    rep.add_argument("--html-images", choices=("inline", "link"), default="inline",
                     help="inline the PNGs in report.html (default: one self-contained file) "
                     "or link them (a small page that must stay beside its figures/ folder)")
    rep.add_argument("--baseline", metavar="GROUP",
                     help="compare every group with this one (its label, e.g. 'G2 supcon', its "
                     "number 'G2', its name or its method): paired differences over seeds with "
                     "95%% intervals")
    sub.add_parser("configs", help="list the shipped configs")
    _add_export_parsers(sub)
    return parser


def _add_evaluation_parsers(sub: argparse._SubParsersAction) -> None:
    """One subcommand per registered evaluation protocol (``varcon.evaluation``)."""
    from varcon.evaluation import all_protocols

    for spec in all_protocols():
        ev = sub.add_parser(spec.name, help=spec.help, description=spec.help)
        ev.add_argument("--checkpoint", required=True,
                        help="a run directory or a checkpoint file (checkpoints/last.pt)")
        ev.add_argument("--output-dir", help="where results go (default: RUN_DIR/eval)")
        for option in spec.options:
            ev.add_argument(option.flag, dest=option.dest, help=option.help)
        ev.add_argument("overrides", nargs="*", metavar="key=value",
                        help="evaluation (knn.k=[20,200]) or data (data.root=...) settings")


def _add_export_parsers(sub: argparse._SubParsersAction) -> None:
    text = "a checkpoint's encoder as safetensors + JSON (or a torchvision state dict)"
    exp = sub.add_parser("export", help=text, description=text)
    exp.add_argument("--checkpoint", required=True,
                     help="a run directory, a checkpoint file or an exported folder")
    exp.add_argument("--output", required=True, help="the folder to write")
    exp.add_argument("--head", action="store_true", help="export the head too")
    exp.add_argument("--format", choices=("varcon", "torchvision"), default="varcon",
                     help="torchvision: also a state dict for torchvision.models.resnetN()")
    exp.add_argument("--overwrite", action="store_true", help="replace an earlier export")
    text = "embeddings of every image of a folder or dataset, to .npz or .parquet"
    emb = sub.add_parser("embed", help=text, description=text)
    emb.add_argument("--checkpoint", required=True,
                     help="a run directory, a checkpoint file or an exported folder")
    emb.add_argument("--input", required=True, metavar="DIR_OR_DATASET",
                     help="a folder of images (class subfolders give labels), or NAME[:SPLIT] "
                     "with NAME dataset|digits|cifar10|cifar100|imagefolder, SPLIT train|test")
    emb.add_argument("--output", required=True, help="FILE.npz or FILE.parquet")
    emb.add_argument("--features", choices=("encoder", "head"), default="encoder")
    emb.add_argument("--overwrite", action="store_true", help="replace an existing file")
    emb.add_argument("overrides", nargs="*", metavar="key=value",
                     help="data.root=..., data.bad_files=skip, eval.batch_size=..., ...")


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def _print_summary(summary: dict) -> None:
    rows = [(k, f"{v:.2f}" if isinstance(v, float) else str(v)) for k, v in summary.items()
            if k != "config"]
    print("\nresults\n" + _table(rows), flush=True)


def _pretrain(args: argparse.Namespace) -> int:
    from varcon.engine.pretrain import pretrain
    from varcon.runtime import config as C
    from varcon.runtime.checkpoint import run_dir_of

    overrides = list(args.overrides)
    if args.resume:
        if args.config:
            raise C.ConfigError(["--resume continues a run with its own config.yaml; "
                                 "drop --config (overrides are still applied)"])
        run_dir = run_dir_of(args.resume)
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
    # a run shortened on the command line gets a warm-up that fits it (unless one is given)
    data, notes = C.fit_warmups(C.apply_overrides(data, overrides), overrides)
    cfg = C.config_from_dict(data)
    if int(os.environ.get("RANK", "0")) == 0:
        for note in notes:
            print(f"note: {note}", flush=True)
    summary = pretrain(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_summary(summary)
    return 0


def _flatten(prefix: str, value: object, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, rows)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for item in value:  # few-shot tasks
            label = " ".join(f"{k}={item[k]}" for k in ("n_way", "k_shot", "classifier")
                             if k in item)
            shown = f"{item.get('mean', float('nan')):.2f} ± {item.get('ci95', 0):.2f}"
            rows.append((f"{prefix} {label}".strip(), shown))
    elif isinstance(value, float):
        rows.append((prefix, f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"))
    elif value is not None:
        rows.append((prefix, str(value)))


def _evaluate(args: argparse.Namespace) -> int:
    from varcon.evaluation import get_protocol
    from varcon.evaluation.commands import evaluate_checkpoint

    options = {o.dest: getattr(args, o.dest) for o in get_protocol(args.command).options}
    out = evaluate_checkpoint(args.command, args.checkpoint, args.overrides, args.output_dir,
                              **options)
    if int(os.environ.get("RANK", "0")) == 0:
        rows: list[tuple[str, str]] = []
        results = dict(out["results"])
        results.pop("per_corruption", None)  # per-type figures are in the JSON file
        results.pop("history", None)  # so are fine-tuning's per-epoch curves
        _flatten("", results, rows)
        rows.append(("written to", out["output_dir"]))
        print(f"\n{args.command} ({out['eval_dataset']})\n" + _table(rows), flush=True)
        # the results (and clustering's figures) join the run's experiment trackers
        with _run_trackers(out["config"], args.checkpoint) as logger:
            logger.log_evaluation(args.command, out["results"])
            if args.command == "cluster":
                logger.log_figures(_cluster_figures(out["output_dir"]))
    return 0


def _run_trackers(cfg: Config, checkpoint: str) -> RunLogger:
    """The experiment trackers of the run that ``checkpoint`` (a run directory or a
    checkpoint file in it) belongs to, continued (``train.loggers`` of ``cfg``)."""
    from varcon.runtime.checkpoint import run_dir_of
    from varcon.runtime.logger import RunLogger

    return RunLogger.for_command(cfg, run_dir_of(checkpoint))


def _cluster_figures(folder: str) -> list[Path]:
    """The centroid similarity matrix and dendrogram as PNG, when matplotlib is there; returns
    the files written."""
    from varcon.reporting import PlotsNotInstalledError, make_cluster_figures

    try:
        figures = make_cluster_figures(folder)
    except PlotsNotInstalledError as exc:
        print(f"note: no PNG figures: {exc}", flush=True)
        return []
    for path in figures:
        print(f"  figure      {path}")
    for warning in figures.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return list(figures)


def _figures(args: argparse.Namespace) -> int:
    from varcon.reporting import make_figures
    from varcon.runtime.checkpoint import run_dir_of

    if (args.run_dir is None) == (args.checkpoint is None):
        given = (f"both {args.run_dir} and --checkpoint {args.checkpoint}"
                 if args.run_dir is not None else "neither")
        raise ValueError(f"varcon figures: give the run once, as RUN_DIR or as --checkpoint "
                         f"RUN_DIR (got {given})")
    run_dir = run_dir_of(args.run_dir if args.run_dir is not None else args.checkpoint)
    try:
        written = make_figures(run_dir, args.output_dir)
    except NotADirectoryError as exc:  # a missing run: an error line, not a traceback
        raise ValueError(str(exc)) from exc
    for path in written:
        print(path)
    for item in written.skipped:
        print(f"skipped: {item}")
    for warning in written.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    _figures_to_trackers(run_dir, list(written))
    return 0


def _figures_to_trackers(run_dir: Path, figures: list[Path]) -> None:
    """Hand ``figures`` to the experiment trackers of the run's ``config.yaml``
    (``train.loggers``). Figures are drawn from files alone, so a config that cannot be read
    and a tracker that is not installed here only skip the trackers, with a warning."""
    from varcon.runtime import config as C
    from varcon.runtime.logger import RunLogger
    from varcon.runtime.trackers import get_tracker, missing_package

    if not figures or not (run_dir / "config.yaml").is_file():
        return
    try:
        cfg = C.config_from_dict(C.read_yaml(run_dir / "config.yaml"), validate=False)
        for name in cfg.train.loggers:
            missing = missing_package(get_tracker(name))
            if missing:
                print(f"warning: figures not sent to {name}: {missing}", file=sys.stderr)
    except ValueError as exc:  # an unreadable config, an unknown logger
        print(f"warning: figures not sent to the experiment trackers: {exc}", file=sys.stderr)
        return
    with RunLogger.for_command(cfg, run_dir, installed_only=True) as logger:
        logger.log_figures(figures)


def _report(args: argparse.Namespace) -> int:
    from varcon.reporting import build_report

    try:
        result = build_report(args.run_dirs, args.output, figures=args.figures,
                              html_images=args.html_images, baseline=args.baseline)
    except ValueError as exc:  # a --baseline that names no group
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{result.markdown}\n{result.html}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for problem in result.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if result.problems else 0


def _export(args: argparse.Namespace) -> int:
    from varcon.export import export_encoder

    out = export_encoder(args.checkpoint, args.output, head=args.head, format=args.format,
                         overwrite=args.overwrite)
    meta = out["meta"]
    rows = [("architecture", f"{meta['architecture']} (out_dim {meta['out_dim']})"),
            ("method", meta["method"]), ("files", ", ".join(out["files"]))]
    if "torchvision" in meta:
        tv = meta["torchvision"]
        rows.append(("torchvision", f"{tv['model']}: missing {tv['missing_keys']}, "
                                    f"unexpected {tv['unexpected_keys']}"))
    rows.append(("written to", out["output"]))
    print("\nexport\n" + _table(rows), flush=True)
    return 0


def _embed(args: argparse.Namespace) -> int:
    from varcon.evaluation.embed import embed_images

    out = embed_images(args.checkpoint, args.input, args.output, features=args.features,
                       overrides=args.overrides, overwrite=args.overwrite)
    labels = (f"{len(out['class_names'])} classes" if out["labelled"] else "none")
    rows = [("images", str(out["n"])), ("dimension", str(out["dim"])),
            ("features", out["features"]), ("labels", labels),
            ("skipped", str(len(out["skipped"]))), ("written to", out["output"])]
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"\nembed ({out['input']})\n" + _table(rows), flush=True)
    return 0


def _configs() -> int:
    from importlib import resources

    for path in sorted(Path(str(resources.files("varcon") / "configs")).glob("*.yaml")):
        first = path.read_text().splitlines()[0] if path.read_text() else ""
        print(f"{path.stem:20s} {first.lstrip('# ')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from varcon.cli.plugins import PluginError, load_plugins

    try:  # before parsing: a plugin may add evaluation commands
        load_plugins()
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    args = _parser().parse_args(argv)
    from varcon.engine import TrainingDiverged, TrainingInterrupted
    from varcon.evaluation import protocol_names

    try:
        if args.command == "pretrain":
            return _pretrain(args)
        if args.command in protocol_names():
            return _evaluate(args)
        if args.command == "figures":
            return _figures(args)
        if args.command == "report":
            return _report(args)
        if args.command == "export":
            return _export(args)
        if args.command == "embed":
            return _embed(args)
        return _configs()
    except TrainingInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr, flush=True)
        return 128 + signal.SIGTERM
    except TrainingDiverged as exc:
        print(f"error: training diverged: {exc}", file=sys.stderr, flush=True)
        return 1
    except (ValueError, FileNotFoundError, ImportError) as exc:
        # ConfigError, CheckpointError, bad data, a missing optional extra
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
