"""Two CPU processes under torchrun (gloo): the same code path as one process."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    import torch.distributed as dist
    import varcon.engine.pretrain as P
    import varcon.engine.state as S
    from varcon.runtime.config import apply_overrides, config_from_dict, read_yaml
    from varcon.runtime.config import resolve_config_path

    built = []
    original = S.build_network_from_spec

    def capture(spec):
        net = original(spec)
        built.append(net)
        return net

    S.build_network_from_spec = capture  # keep a handle on each rank's network
    # several runs in one launch, separated by "--" (OUT OVERRIDES... -- OUT OVERRIDES...):
    # one process group for all, which pretrain uses and leaves open
    dist.init_process_group("gloo")
    data = read_yaml(resolve_config_path("digits"))
    runs = " ".join(sys.argv[1:]).split(" -- ")
    for run in runs:
        out, *overrides = run.split()
        built.clear()
        P.pretrain(config_from_dict(apply_overrides(data, overrides)))
        torch.save(built[0].state_dict(), os.path.join(out, f"rank{os.environ['RANK']}.pt"))
    dist.destroy_process_group()
    """
)

COMMON = [
    "optim.epochs=2", "optim.warmup_epochs=1", "optim.batch_size=128",
    "train.max_steps_per_epoch=3", "linear.run_after_pretrain=false", "train.progress=lines",
]


def torchrun(tmp_path, runs: dict[str, tuple[str, ...]]):
    """One launch that trains each of ``runs`` (name -> overrides) in turn; returns each run's
    folder (rank0.pt, rank1.pt, run/) by name, and the launch's output."""
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    args: list[str] = []
    for name, overrides in runs.items():
        out = tmp_path / name
        out.mkdir()
        args += [*(["--"] if args else []), str(out), f"output_dir={out / 'run'}", *COMMON,
                 *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), *args],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return {name: tmp_path / name for name in runs}, proc


def _load(path):
    return torch.load(path, weights_only=True)


# the runs both tests read, in one torchrun launch: the exact gradient (lr 0.2, wd 0.001), the
# authors' per-rank gradient with the same lr and wd, and the exact gradient with lr / W and
# wd x W (W = 2 processes)
RUNS = {
    "exact_same_lr": ("loss.gradient_scale=exact", "optim.lr=0.2", "optim.weight_decay=0.001"),
    "per_rank": ("loss.gradient_scale=per_rank", "optim.lr=0.2", "optim.weight_decay=0.001"),
    "exact": ("loss.gradient_scale=exact", "optim.lr=0.1", "optim.weight_decay=0.002"),
}


@pytest.fixture(scope="module")
def launch(tmp_path_factory):
    return torchrun(tmp_path_factory.mktemp("ddp"), RUNS)


def test_two_processes_stay_in_sync_and_rank0_writes(launch):
    outs, proc = launch
    out = outs["exact_same_lr"]
    r0, r1 = _load(out / "rank0.pt"), _load(out / "rank1.pt")
    for key in r0:
        if r0[key].is_floating_point() and "running" not in key:
            assert torch.equal(r0[key], r1[key]), key
    run = out / "run"
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.pt").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    ckpt = _load(run / "checkpoints" / "last.pt")
    assert all(torch.equal(ckpt["model"][k], r0[k]) for k in r0)
    # only rank 0 prints epoch summaries (one per run)
    assert proc.stdout.count("epoch 2 |") == len(RUNS)


def test_per_rank_gradient_scale_matches_rescaled_exact(launch):
    """Authors' behaviour (1/W gradient) with lr, wd == exact gradient with lr/W, wd*W."""
    outs, _ = launch
    wa, wb, wc = (_load(outs[name] / "rank0.pt") for name in ("per_rank", "exact",
                                                             "exact_same_lr"))
    float_keys = [k for k in wa if wa[k].is_floating_point()]
    for k in float_keys:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-6, atol=1e-7)
    # and differs from the exact gradient with the same lr and wd
    assert any(not torch.allclose(wa[k], wc[k]) for k in float_keys)
