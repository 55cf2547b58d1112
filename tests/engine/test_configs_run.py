"""Every shipped config runs one training step (and a 1-epoch probe) on tiny generated data
in the real on-disk formats."""

from pathlib import Path

import pytest

from datagen import write_cifar_python, write_image_folder
from varcon.engine.pretrain import pretrain
from varcon.runtime.config import apply_overrides, config_from_dict, read_yaml, resolve_config_path

pytestmark = pytest.mark.slow

CONFIG_DIR = Path(__file__).resolve().parents[2] / "src" / "varcon" / "configs"
PAPER = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem != "digits")


def _dataset_root(name: str, tmp_path: Path) -> Path:
    if name.endswith("cifar10"):
        write_cifar_python(tmp_path, "cifar10", n_train=20, n_test=10)
    elif name.endswith("cifar100"):
        write_cifar_python(tmp_path, "cifar100", n_train=20, n_test=10)
    else:
        write_image_folder(tmp_path, classes=("n01", "n02"), per_class=4, size=(40, 32),
                           fmt="jpeg")
    return tmp_path


@pytest.mark.parametrize("name", PAPER)
def test_config_runs_one_step(name, tmp_path):
    root = _dataset_root(name, tmp_path / "data")
    data = read_yaml(resolve_config_path(name))
    overrides = [
        f"data.root={root}", f"output_dir={tmp_path / 'run'}", "data.num_workers=0",
        "optim.batch_size=4", "optim.epochs=1", "optim.warmup_epochs=0",
        "train.max_steps_per_epoch=1", "train.progress=off", "linear.epochs=1",
        "linear.batch_size=4", "knn.k=3",
    ]
    cfg = config_from_dict(apply_overrides(data, overrides))
    summary = pretrain(cfg)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert (tmp_path / "run" / "eval" / "linear.json").is_file()
    assert 0 <= summary["linear_top1"] <= 100
