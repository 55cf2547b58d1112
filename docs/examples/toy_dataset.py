"""Add a dataset to varcon from your own code: ``data.dataset=toy_shapes``.

The dataset is drawn in memory: 16x16 RGB images of three shapes (square, disc, cross) in
random colours, sizes and places on a noisy background. Adding it takes a loader and one
``register_dataset`` call; configs, ``build_dataset`` and the training data pipeline then
accept the name like a built-in one, and the config validation lists it among the choices.

A loader is ``(root, split, **options) -> dataset``: ``split`` is "train" or "test", and the
options are the ``data.*`` settings (``image_size``, ``cache``, ...) that a loader may ignore.
The dataset yields ``(uint8 image [C, H, W], int label)`` and has ``.info`` (a
``DatasetInfo``) and ``.targets``; ``TensorImageDataset`` holds all of that for images that
fit in memory.

Run: python docs/examples/toy_dataset.py   (CPU, a few seconds)
"""

from __future__ import annotations

import torch

from varcon.data import (
    DatasetInfo,
    DatasetSpec,
    TensorImageDataset,
    build_dataset,
    register_dataset,
)
from varcon.runtime.config import ConfigError, load_config
from varcon.runtime.data import build_train_data

SIZE = 16  # pixels per side
CLASSES = ["square", "disc", "cross"]
# per-channel statistics of the training split, in [0, 1] units
# (measured once with varcon.data.compute_mean_std)
MEAN = (0.163, 0.167, 0.162)
STD = (0.207, 0.218, 0.206)


def draw_shapes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (uint8 [n, 3, SIZE, SIZE]) and labels ([n], classes in turn)."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    labels = torch.arange(n) % len(CLASSES)
    images = torch.randint(0, 48, (n, 3, SIZE, SIZE), generator=g, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        cy, cx = torch.randint(5, SIZE - 5, (2,), generator=g).tolist()
        r = int(torch.randint(2, 5, (1,), generator=g))
        dy, dx = (y - cy).abs(), (x - cx).abs()
        if CLASSES[label] == "square":
            mask = (dy <= r) & (dx <= r)
        elif CLASSES[label] == "disc":
            mask = dy * dy + dx * dx <= r * r
        else:  # a cross: two bars, one pixel thick
            mask = ((dy == 0) & (dx <= r)) | ((dx == 0) & (dy <= r))
        colour = torch.randint(96, 256, (3, 1, 1), generator=g, dtype=torch.uint8)
        images[i] = torch.where(mask, colour, images[i])
    return images, labels


def load_toy_shapes(root: str | None, split: str, **options: object) -> TensorImageDataset:
    """The loader: 300 training or 150 test images (``root`` and the options are unused)."""
    images, labels = draw_shapes(300 if split == "train" else 150,
                                 seed=0 if split == "train" else 1)
    info = DatasetInfo(name="toy_shapes", num_classes=len(CLASSES), class_names=CLASSES,
                       channels=3, image_size=SIZE, mean=MEAN, std=STD)
    return TensorImageDataset(images, labels, info)


TOY_SHAPES = DatasetSpec(
    name="toy_shapes",
    load=load_toy_shapes,
    channels=3,  # None would let data.channels choose, as for imagefolder
    mean=MEAN,
    std=STD,
    needs_root=False,  # True: configs without data.root are refused
    description="16x16 squares, discs and crosses drawn in memory (3 classes)",
)
register_dataset(TOY_SHAPES)


def main() -> None:
    # 1. A config names the dataset like a built-in one (here: the digits quickstart's
    #    settings with the dataset swapped), and is validated against the registry.
    cfg = load_config(None, ["data.dataset=toy_shapes", "name=toy-shapes"])
    try:
        load_config(None, ["data.dataset=toy_shape"])
    except ConfigError as exc:
        print("a misspelt name is refused:", exc.problems[0])

    # 2. build_dataset looks the name up in the registry and calls the loader.
    train = build_dataset(cfg.data.dataset, cfg.data.root, "train")
    test = build_dataset(cfg.data.dataset, cfg.data.root, "test")
    print(f"{train.info.name}: {len(train)} training and {len(test)} test images of "
          f"{train.info.channels}x{train.info.image_size}x{train.info.image_size}, classes "
          f"{', '.join(train.info.class_names)}")

    # 3. The run's data pipeline (what pre-training uses): dataset, statistics, augmentation.
    data = build_train_data(cfg)
    image, label = data.dataset[0]
    view = data.train_transform(image)
    print(f"an augmented view of a {CLASSES[label]}: {tuple(view.shape)} {view.dtype}, "
          f"normalised with mean {data.mean}")
    # From here, `varcon pretrain data.dataset=toy_shapes` trains on it once this module is
    # imported (e.g. from a plugin or a script that calls varcon's engine).


if __name__ == "__main__":
    main()
