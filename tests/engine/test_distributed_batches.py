"""Two CPU processes (gloo) with class-balanced batches and micro-batches: the same steps
as one process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter

import pytest
import torch
from torch import nn

import varcon.engine.pretrain as pretrain_mod
import varcon.engine.state as state_mod
from varcon.runtime.config import (
    apply_overrides,
    config_from_dict,
    read_yaml,
    resolve_config_path,
)

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    import varcon.engine.pretrain as P
    import varcon.engine.state as S
    from varcon.runtime.config import apply_overrides, config_from_dict, read_yaml
    from varcon.runtime.config import resolve_config_path

    built, labels = [], []
    original_net, original_loss = S.build_network_from_spec, S.build_loss

    def capture(spec):
        net = original_net(spec)
        built.append(net)
        return net

    class Spy(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, outputs, y, **kw):
            labels.append(y.cpu())  # this rank's rows
            return self.inner(outputs, y, **kw)

    S.build_network_from_spec = capture
    S.build_loss = lambda cfg, n: Spy(original_loss(cfg, n))
    out = sys.argv[1]
    cfg = config_from_dict(apply_overrides(read_yaml(resolve_config_path("digits")), sys.argv[2:]))
    P.pretrain(cfg)
    torch.save({"model": built[0].state_dict(), "labels": labels},
               os.path.join(out, f"rank{os.environ['RANK']}.pt"))
    """
)

# 8 images of each of 8 classes per global batch; 4 whole classes per rank, encoded in
# chunks of 16 images (2 per rank, 4 in one process): every chunk holds the same images
# in both runs, so BatchNorm sees the same chunks and the weights must agree.
COMMON = [
    "optim.epochs=2", "optim.warmup_epochs=1", "optim.batch_size=64",
    "train.max_steps_per_epoch=3", "linear.run_after_pretrain=false", "train.progress=off",
    "train.tau2_every=0", "data.sampler=class_balanced", "data.samples_per_class=8",
    "train.micro_batch=16",
]


def test_two_processes_keep_the_global_batches_balanced_and_match_one(tmp_path, monkeypatch):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    out = tmp_path / "ddp"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), str(out), f"output_dir={out / 'run'}", *COMMON],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]

    # One process, same config: record its global batches and keep its network.
    single_labels: list[torch.Tensor] = []
    nets: list[nn.Module] = []
    real_loss, real_net = state_mod.build_loss, state_mod.build_network_from_spec

    class Spy(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, outputs, y, **kw):
            single_labels.append(y.cpu())
            return self.inner(outputs, y, **kw)

    monkeypatch.setattr(state_mod, "build_loss", lambda cfg, n: Spy(real_loss(cfg, n)))
    monkeypatch.setattr(state_mod, "build_network_from_spec",
                        lambda spec: nets.append(real_net(spec)) or nets[-1])
    data = read_yaml(resolve_config_path("digits"))
    pretrain_mod.pretrain(config_from_dict(apply_overrides(
        data, [*COMMON, f"output_dir={tmp_path / 'single'}"])))

    assert len(single_labels) == len(ranks[0]["labels"]) == len(ranks[1]["labels"]) == 6
    for step, (r0, r1) in enumerate(zip(ranks[0]["labels"], ranks[1]["labels"],
                                        strict=True)):
        # each rank: 4 whole classes x 8 images x 2 views; together the 1-process batch
        for share in (r0, r1):
            assert sorted(Counter(share.tolist()).values()) == [16] * 4
        assert torch.equal(torch.cat([r0, r1]), single_labels[step])
        assert Counter(single_labels[step].tolist()).keys() == set(
            r0.tolist()) | set(r1.tolist())
        assert len(set(r0.tolist()) & set(r1.tolist())) == 0

    single = nets[0].state_dict()
    for key, value in ranks[0]["model"].items():
        if value.is_floating_point() and "running" not in key:
            assert torch.equal(value, ranks[1]["model"][key]), key  # ranks in sync
            torch.testing.assert_close(value, single[key], rtol=1e-4, atol=1e-5, msg=key)
