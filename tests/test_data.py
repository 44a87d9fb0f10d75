"""Pairing, the dataset check, the split, the gray map and preprocessing."""
import json
import re

import numpy as np
import pytest
from PIL import Image

from seglib import config
from seglib.io import DEFAULT_MAX_PIXELS
from seglib.check import check_dataset, pair_files
from seglib.config import DataConfig, PreprocessConfig
from seglib.errors import SegError
from seglib.graymap import build_graymap, to_class_ids, to_gray
from seglib.prepare import prepare_items
from seglib.split import split_by_subject
from seglib.transforms import to_unit_range

from conftest import square_pair, write_pair


def test_token_swap_pairs_like_the_original(tmp_path):
    image, mask = square_pair()
    write_pair(tmp_path, "Case01_Slice13", image, mask, mask_stem="Case01_Labels_slice13")
    errors = []
    pairs = pair_files(tmp_path / "images", tmp_path / "masks", "Slice", "Labels_slice", errors)
    assert pairs == [("Case01_Slice13.png", "Case01_Labels_slice13.png")] and errors == []


def test_jpeg_image_pairs_with_png_mask(tmp_path):
    write_pair(tmp_path, "a", *square_pair(), image_suffix=".jpg")
    assert pair_files(tmp_path / "images", tmp_path / "masks", "", "", []) == [("a.jpg", "a.png")]


def test_every_unpaired_file_is_reported_at_once(square_dataset):
    (square_dataset / "masks" / "S0_0.png").unlink()
    (square_dataset / "masks" / "S1_1.png").rename(square_dataset / "masks" / "orphan.png")
    with pytest.raises(SegError) as info:
        check_dataset(square_dataset / "images", square_dataset / "masks", DataConfig(), DEFAULT_MAX_PIXELS)
    text = str(info.value)
    assert "3 problem(s)" in text
    assert "S0_0.png: no mask named S0_0.*" in text and "S1_1.png: no mask named" in text
    assert "orphan.png: mask without an image" in text


def test_split_is_grouped_seeded_and_independent_of_listing_order(square_dataset):
    cfg = DataConfig(group_regex=r"^(S\d+)_", val_fraction=0.2, test_fraction=0.2, seed=3)
    report = check_dataset(square_dataset / "images", square_dataset / "masks", cfg, DEFAULT_MAX_PIXELS)
    parts = split_by_subject(report.pairs, report.units, 0.2, 0.2, 3)
    shuffled = list(reversed(report.pairs))
    assert split_by_subject(shuffled, report.units, 0.2, 0.2, 3) == parts
    subjects = {p: {report.units[i] for i, _ in parts[p]} for p in parts}
    assert not (subjects["train"] & subjects["val"]) and not (subjects["train"] & subjects["test"])
    assert not (subjects["val"] & subjects["test"])
    assert sum(len(v) for v in parts.values()) == 12
    assert all(items == sorted(items) for items in parts.values())
    assert split_by_subject(report.pairs, report.units, 0.2, 0.2, 4) != parts


def test_regex_that_matches_nothing_names_the_setting(square_dataset):
    with pytest.raises(SegError, match=r"data.group_regex: '\^\(Case\\d\+\)_' matches none of the 12 image names"):
        check_dataset(square_dataset / "images", square_dataset / "masks", DataConfig(group_regex=r"^(Case\d+)_"), DEFAULT_MAX_PIXELS)


def test_gray_map_round_trip_and_unknown_value():
    gm = build_graymap([255, 0, 128])
    assert gm["gray_values"] == [0, 128, 255] and gm["num_classes"] == 3
    mask = np.array([[0, 128], [255, 0]])
    ids = to_class_ids(mask, gm["gray_values"], "m.png")
    assert ids.tolist() == [[0, 1], [2, 0]]
    assert to_gray(ids, gm["gray_values"]).tolist() == mask.tolist()
    with pytest.raises(SegError, match=r"m.png: gray values \[7\] are not in the gray map"):
        to_class_ids(np.array([[0, 7]]), gm["gray_values"], "m.png")


def test_multiclass_masks_prepare_with_no_code_change(tmp_path):
    image = np.full((40, 60), 50, np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[5:15, 5:20], mask[20:30, 30:50] = 40, 200
    write_pair(tmp_path, "x", image, mask)
    arrays = prepare_items(tmp_path / "images", tmp_path / "masks", [("x.png", "x.png")], [0, 40, 200],
                           PreprocessConfig(base_size=(20, 30)))
    assert arrays["images"].shape == (1, 20, 30) and arrays["sizes"].tolist() == [[40, 60]]
    assert sorted(np.unique(arrays["masks"]).tolist()) == [0, 1, 2]


def test_ct_window_maps_hounsfield_units():
    cfg = PreprocessConfig(ct_window=True, window_level=40.0, window_width=400.0, hu_offset=1024.0)
    raw = np.array([[1024 - 160, 1024 + 40, 1024 + 240, 1024 + 1000]], np.float32)
    assert to_unit_range(raw, 16, cfg, "x")[0].tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0])
    with pytest.raises(SegError, match="ct_window is true but the image is 8-bit"):
        to_unit_range(raw, 8, cfg, "x.png")


def test_sixteen_bit_and_rgb_images_are_read(tmp_path):
    from seglib.io import read_image
    wide = (np.arange(64 * 64).reshape(64, 64) * 10).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "w.png")
    Image.fromarray(np.stack([np.full((8, 8), 100, np.uint8)] * 3, -1)).save(tmp_path / "c.tif")
    raw, depth = read_image(tmp_path / "w.png")
    assert depth == 16 and raw.max() == wide.max()
    raw, depth = read_image(tmp_path / "c.tif")
    assert depth == 8 and raw.shape == (8, 8) and raw.max() == 100


def test_params_types_and_unknown_keys():
    with pytest.raises(SegError, match=r"train: unknown key\(s\) \['epoch'\]"):
        config.section({"train": {"epoch": 3}}, "train")
    with pytest.raises(SegError, match=r"train.epochs: expected int, got 'ten'"):
        config.section({"train": {"epochs": "ten"}}, "train")
    # YAML 1.2 (DVC) reads 1e-3 as a float; PyYAML gives the string, which is accepted as DVC would
    assert config.model({"models": {"unet": {"lr": "1e-3"}}}, "unet").lr == 1e-3
    with pytest.raises(SegError, match=r"model: unknown model 'vit'; choose one of \['deeplabv3', 'unet'\]"):
        config.headline_model({"model": "vit", "models": {"unet": {}, "deeplabv3": {}}})


def test_repository_params_parse():
    params = config.load_params(config.Path(__file__).resolve().parents[1] / "params.yaml")
    for name in config.SECTIONS:
        config.section(params, name)
    assert set(config.models(params)) == {"unet", "deeplabv3"}
    assert config.headline_model(params) in config.models(params)


def test_subjects_sharing_an_image_are_one_split_unit(square_dataset):
    """A scan stored under two subject ids must never straddle train and test."""
    images = square_dataset / "images"
    (images / "S4_1.png").write_bytes((images / "S1_0.png").read_bytes())
    Image.fromarray(np.full((32, 32), 9, np.uint8)).save(images / "S2_0.png")  # blank slices are alike, not copies
    Image.fromarray(np.full((32, 32), 9, np.uint8)).save(images / "S3_0.png")
    cfg = DataConfig(group_regex=r"^(S\d+)_")
    report = check_dataset(images, square_dataset / "masks", cfg, DEFAULT_MAX_PIXELS)
    assert report.units["S1_0.png"] == report.units["S4_0.png"] == "S1+S4"
    assert report.units["S2_0.png"] == "S2" and report.units["S3_0.png"] == "S3"
    assert report.summary()["subjects"] == 6 and report.summary()["split_units"] == 5
    assert report.warnings == ["S1 and S4: 1 identical image(s) (e.g. S1_0.png = S4_1.png), one scan under "
                               "several ids? They are kept in one part of the split, so no scan is both trained "
                               "on and scored; remove the copies to count the scan once"]
    for seed in range(20):
        parts = split_by_subject(report.pairs, report.units, 0.2, 0.2, seed)
        together = {p for p, items in parts.items() for image, _ in items if image[:2] in ("S1", "S4")}
        assert len(together) == 1


def test_a_slice_stored_twice_in_one_subject_is_a_warning(square_dataset):
    images = square_dataset / "images"
    (images / "S0_1.png").write_bytes((images / "S0_0.png").read_bytes())
    report = check_dataset(images, square_dataset / "masks", DataConfig(group_regex=r"^(S\d+)_"), DEFAULT_MAX_PIXELS)
    assert report.units["S0_0.png"] == "S0" and report.summary()["split_units"] == 6
    assert report.warnings == ["S0: 1 image(s) stored more than once (e.g. S0_0.png = S0_1.png); "
                               "a repeated slice weighs twice in training and scoring"]


def test_intensity_stats_are_the_exact_mean_and_std_over_every_pixel():
    from seglib.prepare import intensity_stats
    images = np.array([[[0, 255], [255, 255]]], np.uint8)  # 0, 1, 1, 1 in [0, 1]
    assert intensity_stats(images) == pytest.approx({"mean": 0.75, "std": 0.1875 ** 0.5}, abs=1e-15)
    many = np.random.default_rng(0).integers(0, 256, (300, 128, 128)).astype(np.uint8)  # several chunks
    unit = many.astype(np.float64) / 255
    assert intensity_stats(many) == pytest.approx({"mean": unit.mean(), "std": unit.std()}, rel=1e-12)
    assert intensity_stats(np.full((2, 4, 4), 7, np.uint8))["std"] == 1e-3  # a constant image: no division by 0
