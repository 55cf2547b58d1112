"""VarConLoss with ``num_classes`` (static shapes, no host synchronisation) under
``torch.compile(fullgraph=True)`` and captured in a CUDA graph: equal to eager."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from varcon.losses import VarConLoss

N, D, K = 512, 128, 100


def batch(seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(N, D, generator=g), dim=1)
    labels = torch.randint(0, K, (N,), generator=g)
    labels[:2] = torch.tensor([0, 0])  # at least one class twice; some classes absent
    return feats.to(device), labels.to(device)


def loss_and_grad(fn, feats: torch.Tensor, labels: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    x = feats.detach().clone().requires_grad_()
    loss = fn(x, labels)
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad


def assert_close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    err = float((got.float() - want.float()).abs().max())
    scale = float(want.float().abs().max().clamp_min(1e-12))
    assert torch.isfinite(got).all(), f"{what}: non-finite values"
    assert err <= 1e-4 * scale + 1e-7, f"{what}: max error {err:.3e} (scale {scale:.3e})"


def test_loss_compiled_fullgraph_equals_eager(device):
    loss_fn = VarConLoss(temperature=0.1, epsilon=0.02, num_classes=K).to(device)
    compiled = torch.compile(loss_fn, fullgraph=True)  # a graph break is an error here
    try:
        for seed in (0, 1):  # the second call reuses the compiled graph
            feats, labels = batch(seed, device)
            want_loss, want_grad = loss_and_grad(loss_fn, feats, labels)
            got_loss, got_grad = loss_and_grad(compiled, feats, labels)
            assert_close(got_loss, want_loss, f"compiled loss (batch {seed})")
            assert_close(got_grad, want_grad, f"compiled gradient (batch {seed})")
    finally:
        torch._dynamo.reset()


def test_loss_in_a_cuda_graph_equals_eager(cuda_only):
    """Forward and backward captured once in a CUDA graph, replayed on new batches copied
    into the static inputs (capture fails if the loss synchronises with the host)."""
    device = cuda_only
    loss_fn = VarConLoss(temperature=0.1, epsilon=0.02, num_classes=K).to(device)
    feats, labels = batch(0, device)
    static_x = feats.clone().requires_grad_()
    static_y = labels.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the graph, as the CUDA graph docs do
        for _ in range(3):
            torch.autograd.grad(loss_fn(static_x, static_y), static_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = loss_fn(static_x, static_y)
        (static_grad,) = torch.autograd.grad(static_loss, static_x)
    for seed in (1, 2, 3):
        feats, labels = batch(seed, device)
        with torch.no_grad():
            static_x.copy_(feats)
            static_y.copy_(labels)
        graph.replay()
        want_loss, want_grad = loss_and_grad(loss_fn, feats, labels)
        assert_close(static_loss, want_loss, f"CUDA-graph loss (batch {seed})")
        assert_close(static_grad, want_grad, f"CUDA-graph gradient (batch {seed})")
