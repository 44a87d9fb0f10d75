"""Wrong input: one clear message naming the file or key, a non-zero exit, no outputs written."""
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import REPO, run_module, square_pair, write_pair


@pytest.fixture
def project(tmp_path, square_dataset):
    """params.yaml (tiny, identical names, per-subject groups) beside a small valid dataset."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(image_token="", mask_token="", group_regex=r"^(S\d+)_", val_fraction=0.2, test_fraction=0.2)
    params["preprocess"]["base_size"] = [32, 32]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def split(project, **overrides):
    if overrides:
        params = yaml.safe_load((project / "params.yaml").read_text())
        for section, values in overrides.items():
            params[section].update(values)
        (project / "params.yaml").write_text(yaml.safe_dump(params))
    return run_module("stages.split", "--images", project / "data/images", "--masks", project / "data/masks",
                      "--split", project / "out/split.json", "--folds", project / "out/folds.json",
                      "--report", project / "out/report.json", "--params", project / "params.yaml")


def check_params(project):
    return run_module("stages.check_params", "--params", project / "params.yaml", "--images", project / "data/images",
                      "--out", project / "out/params.checked")


def preprocess(project):
    return run_module("stages.preprocess_gray_map", "--images", project / "data/images",
                      "--masks", project / "data/masks", "--split", project / "out/split.json",
                      "--graymap", project / "prep/graymap.json", "--prepared", project / "prep/arrays",
                      "--samples", project / "prep/samples.png", "--params", project / "params.yaml")


def assert_failed(result, *fragments, outputs=()):
    assert result.returncode == 2, result.stderr
    message = result.stderr.strip()
    assert message.startswith("error: ") and "Traceback" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    for path in outputs:
        assert not path.exists(), path


def test_valid_dataset_passes(project):
    result = split(project)
    assert result.returncode == 0, result.stderr
    assert preprocess(project).returncode == 0


def test_image_without_mask(project):
    (project / "data/masks/S2_1.png").unlink()
    assert_failed(split(project), "S2_1.png: no mask named S2_1.*", outputs=[project / "out"])


def test_mask_without_image(project):
    (project / "data/images/S3_0.png").unlink()
    assert_failed(split(project), "S3_0.png: mask without an image", outputs=[project / "out"])


def test_corrupt_image(project):
    (project / "data/images/S1_0.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    assert_failed(split(project), "S1_0.png: cannot decode image", outputs=[project / "out"])


def test_truncated_image(project):
    path = project / "data/images/S1_1.png"
    big = (np.random.default_rng(0).integers(0, 255, (64, 64))).astype(np.uint8)
    Image.fromarray(big).save(path)
    path.write_bytes(path.read_bytes()[:300])
    assert_failed(split(project), "S1_1.png: cannot decode image", outputs=[project / "out"])


def test_size_mismatch(project):
    image, _ = square_pair(size=32)
    Image.fromarray(np.zeros((40, 32), np.uint8)).save(project / "data/masks/S0_1.png")
    assert_failed(split(project), "S0_1.png: size 32x40 differs from its image S0_1.png (32x32)",
                  outputs=[project / "out"])


def test_three_channel_mask(project):
    _, mask = square_pair()
    Image.fromarray(np.stack([mask] * 3, -1)).save(project / "data/masks/S4_0.png")
    assert_failed(split(project), "S4_0.png: mask has mode 'RGB' (3 channels)", outputs=[project / "out"])


def test_gray_value_not_in_the_map(project):
    _, mask = square_pair(value=128)
    Image.fromarray(mask).save(project / "data/masks/S5_1.png")
    assert_failed(split(project, data={"gray_values": [0, 255]}),
                  "S5_1.png: gray values [128] are not in data.gray_values [0, 255]", outputs=[project / "out"])


def test_all_problems_reported_at_once(project):
    (project / "data/masks/S2_1.png").unlink()
    (project / "data/images/S1_0.png").write_bytes(b"garbage")
    assert_failed(split(project), "2 problem(s)", "S2_1.png", "S1_0.png")


def test_empty_dataset(project):
    shutil.rmtree(project / "data/images")
    (project / "data/images").mkdir()
    shutil.rmtree(project / "data/masks")
    (project / "data/masks").mkdir()
    assert_failed(split(project), "data/images: no images found", outputs=[project / "out"])


def test_missing_folder(project):
    shutil.rmtree(project / "data/masks")
    assert_failed(split(project), "data/masks: mask folder not found", outputs=[project / "out"])


def test_regex_that_matches_nothing(project):
    assert_failed(split(project, data={"group_regex": r"^(Case\d+)_"}),
                  "data.group_regex: '^(Case\\d+)_' matches none of the 12 image names", outputs=[project / "out"])


def test_hu_window_on_8_bit_data(project):
    assert split(project).returncode == 0
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["preprocess"]["ct_window"] = True
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert_failed(preprocess(project), "preprocess.ct_window is true but the image is 8-bit",
                  outputs=[project / "prep"])


def test_wrong_param_type_names_the_key(project):
    assert_failed(split(project, data={"val_fraction": "a lot"}), "data.val_fraction: expected float, got 'a lot'")


def test_unknown_model_name(project, tmp_path):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["model"] = "segformer"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = run_module("stages.evaluate", "--model", "unet", "--checkpoint", tmp_path / "models/unet/model.pt",
                        "--prepared", tmp_path / "p", "--masks", tmp_path / "m", "--split", tmp_path / "s.json",
                        "--metrics", tmp_path / "o/test/unet.json", "--plots", tmp_path / "o/plots",
                        "--timing", tmp_path / "o/t.json", "--params", project / "params.yaml")
    assert_failed(result, "model: unknown model 'segformer'; choose one of ['deeplabv3', 'unet']",
                  outputs=[tmp_path / "o"])


def test_token_that_no_name_contains(project):
    assert_failed(split(project, data={"image_token": "Slice", "mask_token": "Labels_slice"}),
                  "data.image_token: 'Slice' appears in none of the 12 image names (e.g. S0_0.png)",
                  outputs=[project / "out"])


@pytest.mark.parametrize("key, value, message", [
    ("precision", "fp8", "models.unet.precision: must be one of ['fp32', 'bf16', 'fp16'], got 'fp8'"),
    ("norm", "group", "models.unet.norm: must be one of ['batch', 'instance'], got 'group'"),
    ("depth", 0, "models.unet.depth: must be 1 to 6 (2x poolings), got 0"),
    ("depth", 5, "models.unet.depth: 5 poolings need inputs of at least 64 px, but the model sees 32 px"),
])
def test_wrong_model_setting_names_the_model_key(project, key, value, message):
    assert split(project).returncode == 0 and preprocess(project).returncode == 0
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["models"]["unet"][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = run_module("stages.train", "--model", "unet", "--prepared", project / "prep/arrays",
                        "--out", project / "models/unet", "--metrics", project / "o/unet.json",
                        "--log", project / "o/unet.csv", "--timing", project / "o/t.json", "--resume", project / "o/r.pt",
                        "--params", project / "params.yaml")
    assert_failed(result, message, outputs=[project / "models", project / "o"])
