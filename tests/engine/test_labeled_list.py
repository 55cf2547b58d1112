"""``data.labeled_list``: exactly the images a text file names keep their label (semi-
supervised pre-training, and evaluation's kNN bank and probe), on an ImageFolder tree."""

from __future__ import annotations

import pytest
import torch

from datagen import write_image_folder
from varcon.data.labels import listed_mask, read_labeled_list
from varcon.data.subsets import item_paths
from varcon.engine.pretrain import pretrain
from varcon.runtime.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    read_yaml,
    resolve_config_path,
)
from varcon.runtime.data import build_train_data

CLASSES = ("cat", "dog", "frog")


def tree_config(tmp_path, *overrides, cache="none"):
    root = tmp_path / "tree"
    if not root.exists():
        write_image_folder(root, classes=CLASSES, per_class=6, size=(8, 8))
    data = read_yaml(resolve_config_path("digits"))
    data["data"].pop("augment_params")
    data["output_dir"] = str(tmp_path / "run")
    return config_from_dict(apply_overrides(data, [
        "data.dataset=imagefolder", f"data.root={root}", f"data.cache={cache}",
        "data.augment=eval", "optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=18",
        "train.progress=off", "linear.run_after_pretrain=false", "train.tau2_every=0",
        *overrides]))


def write_list(tmp_path, lines, name="labeled.txt"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_the_listed_images_keep_their_labels_and_the_rest_are_unlabeled(tmp_path, cache):
    tree = tmp_path / "tree"
    write_image_folder(tree, classes=CLASSES, per_class=6, size=(8, 8))
    listed = ["# two cats, a dog by its absolute path, a frog", "cat/0000.png", "cat/0003.png",
              "", str(tree / "train" / "dog" / "0005.png"), "  frog/0001.png  "]
    lst = write_list(tmp_path, listed)
    data = build_train_data(tree_config(tmp_path, "method=varcon_ssl", "ssl.num_prototypes=3",
                                        f"data.labeled_list={lst}", cache=cache))
    paths = item_paths(data.pretrain_set)
    assert paths is not None and len(paths) == 18  # every image is pre-trained on
    shown = {"/".join(p.split("/")[-2:]): int(y) for p, y
             in zip(paths, data.pretrain_labels.tolist(), strict=True) if y >= 0}
    assert shown == {"cat/0000.png": 0, "cat/0003.png": 0, "dog/0005.png": 1,
                     "frog/0001.png": 2}
    # evaluation's labeled set (kNN bank, probe) is the listed images
    assert sorted(int(y) for y in data.dataset.targets) == [0, 0, 1, 2]

    # a supervised method trains on the listed images alone
    sup = build_train_data(tree_config(tmp_path, "method=varcon", f"data.labeled_list={lst}",
                                       cache=cache))
    assert len(sup.pretrain_set) == 4 and sup.pretrain_labels is None


def test_semi_supervised_varcon_ssl_trains_with_a_list(tmp_path):
    lst = write_list(tmp_path, ["cat/0000.png", "dog/0000.png", "frog/0000.png"])
    summary = pretrain(tree_config(tmp_path, "method=varcon_ssl", "ssl.num_prototypes=3",
                                   f"data.labeled_list={lst}"))
    assert summary["epochs"] == 1 and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_names_that_match_nothing_or_several_images_are_errors_with_the_fix(tmp_path):
    paths = [f"/data/train/{c}/{i}.png" for c in ("cat", "dog") for i in range(3)]
    targets = torch.tensor([0, 0, 0, 1, 1, 1])
    mask = listed_mask(paths, ["cat/1.png", "/data/train/dog/2.png"], targets)
    assert mask.tolist() == [False, True, False, False, False, True]
    with pytest.raises(ValueError, match=r"1 of 2 listed image\(s\) are not among the 6 "
                                         r"training images: cat/9\.png.*data\.per_class"):
        listed_mask(paths, ["cat/1.png", "cat/9.png"], targets)
    with pytest.raises(ValueError, match=r"match several training images: 1\.png.*class/"):
        listed_mask(paths, ["1.png"], targets)
    with pytest.raises(ValueError, match=r"have no label.*<root>/train/<class>/"):
        listed_mask(paths, ["cat/1.png"], torch.tensor([-1, -1, -1, 1, 1, 1]))


def test_the_list_file_is_read_with_comments_and_checked(tmp_path):
    assert read_labeled_list(write_list(tmp_path, ["# header", "a/1.png", "", " b/2.png"])) \
        == ["a/1.png", "b/2.png"]
    with pytest.raises(ValueError, match=r"no file .*missing\.txt"):
        read_labeled_list(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="names no image"):
        read_labeled_list(write_list(tmp_path, ["# nothing"], name="empty.txt"))


def test_a_list_with_data_that_has_no_files_or_with_a_fraction_is_rejected(tmp_path):
    lst = write_list(tmp_path, ["0"])
    data = read_yaml(resolve_config_path("digits"))
    data["output_dir"] = str(tmp_path / "digits")
    cfg = config_from_dict(apply_overrides(data, [f"data.labeled_list={lst}"]))
    with pytest.raises(ValueError, match=r"data.dataset=digits does not say which file.*"
                                         r"imagefolder, or data.labeled_fraction"):
        build_train_data(cfg)
    with pytest.raises(ConfigError, match=r"labeled_fraction and data\.labeled_list both"):
        tree_config(tmp_path, f"data.labeled_list={lst}", "data.labeled_fraction=0.5")
