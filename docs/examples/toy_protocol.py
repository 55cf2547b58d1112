"""A toy evaluation protocol registered from outside varcon: nearest class-mean accuracy.

Each test image is given the class whose mean training feature (L2-normalised) is closest
in cosine similarity. One file holds the whole protocol: its settings (a new config section,
``centroid.*``), its run function and its registration; after ``import toy_protocol``::

    evaluate_checkpoint("centroid", "runs/RUN", ["centroid.normalize=false"])

writes ``runs/RUN/eval/centroid.json``, and ``build_report`` shows a "centroid top-1 (%)"
column (a "not run" line with its command for runs without it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from varcon.evaluation import ProtocolSpec, register_protocol
from varcon.evaluation.results import write_result


@dataclass
class CentroidConfig:
    """The ``centroid`` config section: ``centroid.normalize=false`` on the command line."""

    normalize: bool = True  # L2-normalise features before averaging them


def run_centroid(session: Any) -> dict[str, Any]:
    """Nearest class-mean top-1 (%) of the test split against the training split's means."""
    t0 = time.perf_counter()
    settings = session.cfg.centroid
    train_f, train_y = session.features("train")  # encoded once per session, every rank
    test_f, test_y = session.features("test")
    if not session.ctx.is_main:
        return {}
    if settings.normalize:
        train_f, test_f = F.normalize(train_f, dim=1), F.normalize(test_f, dim=1)
    means = torch.zeros(session.num_classes, train_f.shape[1]).index_add_(0, train_y, train_f)
    means = F.normalize(means, dim=1)  # a class without training images never wins
    predicted = (test_f @ means.T).argmax(dim=1)
    results = {"top1": 100.0 * float((predicted == test_y).float().mean()),
               "n_test": int(test_y.numel())}
    write_result(session.out_dir, "centroid", results=results,
                 settings={"normalize": settings.normalize}, context=session.context(),
                 seconds=time.perf_counter() - t0)
    return results


register_protocol(ProtocolSpec(
    name="centroid",  # the CLI command and the key of evaluate_checkpoint
    help="nearest class-mean accuracy of a checkpoint's frozen features",
    run=run_centroid,
    section="centroid",  # reads cfg.centroid ...
    config=CentroidConfig,  # ... a section this protocol adds
    columns={"centroid top-1 (%)": lambda results: results["top1"]},
))
