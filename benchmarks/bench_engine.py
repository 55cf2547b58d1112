"""Engine overhead: ``varcon.engine.pretrain`` against a plain hand-written loop.

Both train the same network with the same data pipeline, batch, loss and optimiser for
the same number of steps; the plain loop has no logging, progress, meters, checkpoints,
signal handling or non-finite checks. Runs alternate (plain, engine, plain, ...) so that
load changes on a shared machine hit both alike; the table shows the median wall time of
each, setup included (dataset, network, run directory), evaluation excluded.

    python benchmarks/bench_engine.py                     # built-in digits, small CNN
    python benchmarks/bench_engine.py --epochs 10 --rounds 5
    python benchmarks/bench_engine.py --dataset imagefolder --root /tmp/cifar10 \\
        --image-size 32 --epochs 1 --batch-size 256
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from varcon.data import MultiView, TransformedDataset
from varcon.data.sampling import EpochBatchSampler
from varcon.engine.pretrain import build_loss, pretrain, seed_everything
from varcon.models import build_network_from_spec
from varcon.runtime.config import apply_overrides, config_from_dict, read_yaml, resolve_config_path
from varcon.runtime.data import build_train_data, run_network_spec
from varcon.runtime.schedule import WarmupCosine, build_optimizer


def make_config(args: argparse.Namespace, out: Path):
    data = read_yaml(resolve_config_path("digits"))
    overrides = [
        f"output_dir={out}", f"optim.epochs={args.epochs}", "optim.warmup_epochs=0",
        f"optim.batch_size={args.batch_size}", "linear.run_after_pretrain=false",
        "train.progress=bar" if args.progress else "train.progress=off",
        f"data.num_workers={args.workers}", f"data.dataset={args.dataset}",
    ]
    if args.root:
        overrides += [f"data.root={args.root}", "data.augment_params={}"]
    if args.image_size:
        overrides.append(f"data.image_size={args.image_size}")
    return config_from_dict(apply_overrides(data, overrides))


def plain_loop(cfg) -> float:
    """The same training, written as a bare loop (what the engine is compared with)."""
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    data = build_train_data(cfg)
    sampler = EpochBatchSampler(len(data.dataset), cfg.optim.batch_size, seed=cfg.seed)
    loader = torch.utils.data.DataLoader(
        TransformedDataset(data.dataset, MultiView(data.train_transform, cfg.data.views)),
        batch_sampler=sampler, num_workers=cfg.data.num_workers,
        persistent_workers=cfg.data.num_workers > 0,
    )
    net = build_network_from_spec(run_network_spec(cfg, data))
    loss_fn = build_loss(cfg, data.info.num_classes)
    optimizer = build_optimizer(net, "sgd", cfg.optim.lr, cfg.optim.momentum,
                                cfg.optim.weight_decay)
    steps = sampler.batches_per_epoch
    schedule = WarmupCosine(cfg.optim.lr, cfg.optim.epochs * steps)
    for epoch in range(cfg.optim.epochs):
        sampler.set_epoch(epoch)
        net.train()
        for step, (images, labels) in enumerate(loader):
            schedule.apply(optimizer, epoch * steps + step)
            labels = labels.repeat_interleave(images.shape[1])
            loss = loss_fn(net(images.flatten(0, 1)), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - t0


def engine_run(cfg) -> float:
    t0 = time.perf_counter()
    pretrain(cfg)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--root", default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--progress", action="store_true", help="engine shows a tqdm bar")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    plain, engine = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            cfg = make_config(args, Path(tmp) / f"run{r}")
            plain.append(plain_loop(cfg))
            engine.append(engine_run(cfg))
            print(f"round {r + 1}: plain {plain[-1]:.2f} s, engine {engine[-1]:.2f} s", flush=True)
    p, e = statistics.median(plain), statistics.median(engine)
    print(f"\n{args.dataset}, {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.workers} workers, {args.threads} threads, {args.rounds} rounds (median)\n")
    print("| loop | wall time (s) | overhead |")
    print("|---|---:|---:|")
    print(f"| plain hand-written loop | {p:.2f} | |")
    print(f"| varcon engine (pretrain) | {e:.2f} | {100 * (e / p - 1):+.1f}% |")


if __name__ == "__main__":
    main()
