"""Tutorial: use a trained encoder in your own code (train -> export -> load -> embed).

Run it with ``python docs/tutorials/use_an_exported_encoder.py`` (about half a minute on a
laptop CPU). It

1. pre-trains VarCon briefly on scikit-learn's digits (the quickstart config, few epochs),
2. exports the encoder (``varcon export``): ``encoder.safetensors`` + ``varcon_encoder.json``,
3. rebuilds it in one line with ``varcon.load_encoder`` (weights and preprocessing),
4. embeds the digits train and test splits (``varcon embed``) into ``.npz`` files,
5. fits a scikit-learn logistic regression on the embeddings and prints its test accuracy.

Every step has a command-line twin, shown in the comments; see docs/using_encoders.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import varcon
from varcon.engine.pretrain import pretrain
from varcon.evaluation.embed import embed_images, read_embeddings
from varcon.export import export_encoder
from varcon.runtime.config import load_config

EPOCHS = 4  # the quickstart trains 40; a few already separate the digits well


def main(workdir: Path) -> float:
    start = time.perf_counter()
    # 1. Pre-train (CLI: varcon pretrain --output-dir RUN optim.epochs=4 ...).
    run = workdir / "run"
    cfg = load_config("digits", [
        f"output_dir={run}", f"optim.epochs={EPOCHS}", "optim.warmup_epochs=1",
        "train.progress=off", "train.tau2_every=0", "linear.run_after_pretrain=false",
    ])
    pretrain(cfg)
    print(f"trained {EPOCHS} epochs into {run} ({time.perf_counter() - start:.0f} s)")

    # 2. Export (CLI: varcon export --checkpoint RUN --output EXPORTED).
    exported = workdir / "exported"
    export_encoder(run, exported)
    print("exported:", ", ".join(sorted(p.name for p in exported.iterdir())))

    # 3. Load: the encoder in eval mode, and the preprocessing it expects.
    encoder = varcon.load_encoder(exported)
    image = Image.fromarray(np.uint8(np.random.default_rng(0).integers(0, 256, (8, 8))))
    with torch.no_grad():
        one = encoder(encoder.transform(image)[None])  # [1, out_dim]
    print(f"one image -> features {tuple(one.shape)}")

    # 4. Embed both splits (CLI: varcon embed --checkpoint EXPORTED --input digits:train
    #    --output train.npz); a folder of images works the same (--input photos/).
    files = {}
    for split in ("train", "test"):
        files[split] = workdir / f"{split}.npz"
        embed_images(exported, f"digits:{split}", files[split], progress=False)
    train, test = read_embeddings(files["train"]), read_embeddings(files["test"])
    print(f"embeddings: train {train['embeddings'].shape}, test {test['embeddings'].shape}")

    # 5. Any classifier on the frozen features.
    scaler = StandardScaler().fit(train["embeddings"])
    clf = LogisticRegression(max_iter=2000)
    clf.fit(scaler.transform(train["embeddings"]), train["labels"])
    accuracy = clf.score(scaler.transform(test["embeddings"]), test["labels"])
    print(f"logistic regression on the embeddings: test accuracy {accuracy:.3f} "
          f"(chance 0.100; {time.perf_counter() - start:.0f} s in all)")
    return accuracy


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="varcon-tutorial-") as tmp:
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp))
