"""The pipeline on real spine MRI (../shared/datasets): a handful of subjects, low resolution, one epoch.

Skips cleanly where ../shared is absent. The full-size runs behind the README's
real-data table are made with `python -m bench.real_data` (see README).
"""
import csv
import json

import numpy as np
import pytest

from bench.scratch import dvc, scratch_project
from conftest import SHARED
from seglib.check import check_dataset
from seglib.config import DataConfig, VolumeConfig
from seglib.folds import training_subset
from seglib.io import DEFAULT_MAX_PIXELS, read_csv, read_image, read_mask
from seglib.metrics import image_dice, scores
from seglib.split import split_by_subject
from seglib.volume import read_label_volume, read_volume

DATASETS = SHARED / "datasets"
TINY = {"preprocess.base_size": [64, 64], "train.epochs": 1, "runtime.device": "cpu", "runtime.threads": 1, "evaluate.overlays": 1,
        "models.unet.width": 4, "models.unet.batch_size": 4, "models.deeplabv3.batch_size": 4, "models.deeplabv3.epochs": None,
        "models.deeplabv3.input_scale": 1.0,
        "compare.bootstrap": 200, "compare.permutations": 200}

# one model where the case is about the data, not the comparison (the tiny cross-validation and the binary case
# run both): each stage run costs seconds of start-up
UNET_ONLY = {"models": {"unet": {"width": 4, "batch_size": 4}}}

CASES = {
    # name: (images, masks, params, expected gray values)
    "myosegmentum-binary": ("myosegmentum-sagittal/images", "myosegmentum-sagittal/masks",
                            {"data.val_fraction": 0.2, "data.test_fraction": 0.2}, [0, 255]),
    "myosegmentum-levels": ("myosegmentum-sagittal/images", "myosegmentum-sagittal/levels",
                            {"data.val_fraction": 0.2, "data.test_fraction": 0.2, **UNET_ONLY}, [0, 40, 80, 120, 160, 200]),
    "vesal-3-class": ("vesal-t2-sagittal/images", "vesal-t2-sagittal/masks",
                      {"data.image_token": "", "data.mask_token": "", "data.group_regex": "",
                       "data.val_fraction": 0.15, "data.test_fraction": 0.15, **UNET_ONLY}, [0, 128, 255]),
}


def _subset(images, masks):
    """The first 6 subjects of MyoSegmenTUM (Case01-Case06), or every file of a small set."""
    names = sorted(p.name for p in images.iterdir())
    if len(names) > 100:
        names = [n for n in names if n[:6] in {f"Case0{i}" for i in range(1, 7)}]
    mask_names = {n.replace("Slice", "Labels_slice") for n in names} | set(names)
    return {"images": set(names), "masks": {p.name for p in masks.iterdir() if p.name in mask_names}}


@pytest.mark.skipif(not DATASETS.is_dir(), reason="../shared/datasets is absent")
@pytest.mark.parametrize("case", sorted(CASES))
def test_real_mri_through_the_whole_pipeline(case, tmp_path):
    images, masks, params, grays = CASES[case]
    images, masks = DATASETS / images, DATASETS / masks
    root = scratch_project(tmp_path / case, images, masks, {**TINY, **params}, files=_subset(images, masks))
    dvc("repro", cwd=root)
    graymap = json.loads((root / "artifacts/graymap.json").read_text())
    assert graymap["gray_values"] == grays
    result = json.loads((root / "metrics/eval.json").read_text())
    assert len(result["confusion"]) == len(grays)
    check = json.loads((root / "reports/dataset_check.json").read_text())
    assert sum(part["images"] for part in check["split"].values()) == check["images"]
    if case.startswith("myosegmentum"):
        assert check["subjects"] == 6
        assert sum(part["subjects"] for part in check["split"].values()) == 6  # no subject in two parts
    else:
        assert check["empty_masks"] == 3  # slices 00, 05 and 10 have no spine in view
    units = json.loads((root / "artifacts/split.json").read_text())["units"]
    with open(root / "plots/eval/unet.csv", newline="") as f:
        assert all(row["subject"] == units[row["image"]] for row in csv.DictReader(f))  # statistics use split units


@pytest.mark.skipif(not DATASETS.is_dir(), reason="../shared/datasets is absent")
def test_copied_subjects_in_myosegmentum_never_straddle_the_split():
    """MyoSegmenTUM as redistributed holds four subjects twice under a second id (checked by md5)."""
    root = DATASETS / "myosegmentum-sagittal"
    cfg = DataConfig(image_token="Slice", mask_token="Labels_slice", group_regex=r"^(Case\d+)_")
    report = check_dataset(root / "images", root / "masks", cfg, DEFAULT_MAX_PIXELS)
    copies = {"Case18+Case19", "Case32+Case33", "Case51+Case53", "Case52+Case54"}
    assert copies <= set(report.units.values())
    assert report.summary()["subjects"] == 54 and report.summary()["split_units"] == 50
    assert sum("identical image(s)" in w for w in report.warnings) == 4
    for seed in range(10):
        parts = split_by_subject(report.pairs, report.units, 0.15, 0.15, seed)
        part_of = {report.subjects[image]: part for part, items in parts.items() for image, _ in items}
        assert all(len({part_of[s] for s in unit.split("+")}) == 1 for unit in copies)


@pytest.mark.skipif(not (DATASETS / "open-spine-ct").is_dir(), reason="../shared/datasets/open-spine-ct is absent")
def test_real_ct_as_four_fold_cross_validation(tmp_path):
    """The 4-subject CT set, windowed in HU: each subject tested once (a hold-out split tests one); and a
    learning curve, each fold also trained on 1 of its 2 training subjects."""
    ct = DATASETS / "open-spine-ct"
    settings = {**TINY, "preprocess.ct_window": True, "preprocess.hu_offset": 1024.0,
                "data.val_fraction": 0.25, "data.test_fraction": 0.25, "evaluate.pixel_spacing": [1.5, 1.5],
                "evaluate.subject_spacing": {"Case04": [1.0, 1.0]}, "crossval.folds": [0, 1, 2, 3],
                "crossval.train_subjects": [1], **UNET_ONLY}
    root = scratch_project(tmp_path / "ct", ct / "images", ct / "masks", settings)
    dvc("repro", cwd=root)
    cv = json.loads((root / "metrics/compare.json").read_text())["crossval"]
    assert cv["folds"] == 4 and cv["subjects"] == 4
    assert set(cv["per_subject_dice"]["unet"]) == {"Case01", "Case02", "Case03", "Case04"}
    folds = json.loads((root / "artifacts/folds.json").read_text())
    assert sorted(len({folds["units"][i] for i, _ in f["test"]}) for f in folds["folds"]) == [1, 1, 1, 1]
    meta = json.loads((root / "artifacts/cv/fold0/prepared/meta.json").read_text())
    assert meta["preprocess"]["ct_window"] and meta["preprocess"]["hu_offset"] == 1024.0
    assert json.loads((root / "metrics/test/cv/unet-0-0.json").read_text())["units"] == "mm"
    _assert_curve_scores_every_subject_once_and_pools_its_files(root, range(4))


def _assert_curve_scores_every_subject_once_and_pools_its_files(root, folds):
    """At 1 training subject every image is still tested once, and the pooled figures of that size are
    those of its per-run files; each run trained on its seeded subject, drawing the full part's count."""
    split = json.loads((root / "artifacts/folds.json").read_text())
    result = json.loads((root / "metrics/compare.json").read_text())
    small, full = result["curve"]["points"]
    assert (small["train_subjects"], full["train_subjects"], full["all"]) == (1, 2.0, True)  # 4 subjects: 2 train
    assert full["models"]["unet"]["slice_fg_dice"] == result["crossval"]["models"]["unet"]["slice_fg_dice"]
    rows = [r for f in folds for r in read_csv(root / f"plots/eval/curve/n1/unet-{f}-0.csv")]
    assert sorted(r["image"] for r in rows) == sorted(split["units"])
    for fold in folds:
        trained = json.loads((root / f"metrics/curve/n1/unet-{fold}-0.json").read_text())
        part = {**split["folds"][fold], "units": split["units"]}
        (unit,) = training_subset(part, split["units"], 1, seed=42)  # data.seed
        assert trained["train_subjects"] == 1 and trained["epoch_images"] == len(part["train"])
        assert trained["train_images"] == sum(split["units"][i] == unit for i, _ in part["train"])
    matrix = np.sum([json.loads((root / f"metrics/test/curve/n1/unet-{f}-0.json").read_text())["confusion"]
                     for f in folds], axis=0)
    assert small["models"]["unet"]["pooled_fg_dice"] == pytest.approx(scores(matrix)["fg_dice"], abs=1e-6)
    assert small["models"]["unet"]["slice_fg_dice"]["mean"] == pytest.approx(np.mean(list(image_dice(rows).values())),
                                                                             abs=1e-6)
    assert small["convergence"]["unet"]["runs"] == 4
    report = (root / "reports/report.md").read_text()
    assert "## Learning curve" in report and "| 1 | " in report and (root / "plots/compare/learning_curve.png").is_file()


VOLUMES = DATASETS / "myosegmentum-volumes"


@pytest.mark.skipif(not VOLUMES.is_dir(), reason="../shared/datasets/myosegmentum-volumes is absent")
def test_real_volumes_slice_into_the_published_sagittal_slices():
    """The header (axes I, P, R) read into the canonical orientation gives, plane for plane, the pixels of
    the slice set (row 0 superior, column 0 anterior; its plane k is canonical plane 76 - k, right to left)."""
    volume = read_volume(VOLUMES / "images" / "Case01.nii.gz", "sagittal", VolumeConfig().max_voxels)
    labels = read_label_volume(VOLUMES / "levels" / "Case01.nii.gz", "sagittal", VolumeConfig().max_voxels)[0]
    assert volume.voxels.shape == (77, 224, 224) and volume.spacing == (1.0, 1.0, 1.0)
    slices = DATASETS / "myosegmentum-sagittal"
    for path in sorted((slices / "images").glob("Case01_Slice*.png")):
        k = int(path.stem.split("Slice")[1])
        assert np.array_equal(volume.voxels[76 - k], read_image(path)[0]), path.name
        mask = read_mask(slices / "levels" / path.name.replace("Slice", "Labels_slice"))[0]
        assert np.array_equal(labels.voxels[76 - k] * 40, mask), path.name   # the slice set's gray levels


@pytest.mark.skipif(not VOLUMES.is_dir(), reason="../shared/datasets/myosegmentum-volumes is absent")
def test_copied_volumes_are_merged_and_levels_group_into_one_class():
    cfg = DataConfig(group_regex=r"^(Case\d+)")
    report = check_dataset(VOLUMES / "images", VOLUMES / "levels", cfg, DEFAULT_MAX_PIXELS,
                           VolumeConfig(label_groups={"vertebra": (1, 2, 3, 4, 5)}))
    assert {"Case18+Case19", "Case32+Case33", "Case51+Case53", "Case52+Case54"} <= set(report.units.values())
    assert report.summary()["split_units"] == 50 and report.summary()["gray_values"] == [0, 1]
