import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def tiny_meta(gray_values=(0, 255), base_size=(32, 32), mean=0.2, std=0.3):
    """The prepared-data contract of a tiny dataset, as preprocess would write it."""
    from seglib.config import PreprocessConfig
    from seglib.prepared_meta import PreparedMeta
    return PreparedMeta(tuple(gray_values), mean, std, PreprocessConfig(base_size=tuple(base_size)))
SHARED = REPO.parent / "shared"


def write_pair(root, stem, image, mask, image_suffix=".png", mask_stem=None):
    """Write images/<stem><suffix> and masks/<mask_stem>.png under root."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{stem}{image_suffix}")
    Image.fromarray(mask).save(root / "masks" / f"{mask_stem or stem}.png")


def square_pair(size=32, value=255, offset=8, background=40):
    image = np.full((size, size), background, np.uint8)
    mask = np.zeros((size, size), np.uint8)
    image[offset:offset + 12, offset:offset + 12] = 200
    mask[offset:offset + 12, offset:offset + 12] = value
    return image, mask


@pytest.fixture
def square_dataset(tmp_path):
    """Six subjects x two slices of bright squares, masks with identical names; no two images alike."""
    root = tmp_path / "data"
    for subject in range(6):
        for k in range(2):
            write_pair(root, f"S{subject}_{k}", *square_pair(offset=4 + subject + k, background=40 + subject))
    return root


def run_module(module, *args, cwd=REPO):
    """Run `python -m module args` and return the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


@pytest.fixture(scope="session")
def tiny_built(tmp_path_factory):
    """The tiny project, committed, nothing run yet. Shared: copy it (tiny_project.copy_project) to change it."""
    from tiny_project import make_tiny_repo
    return make_tiny_repo(tmp_path_factory.mktemp("tiny") / "built")


@pytest.fixture(scope="session")
def tiny_ran(tiny_built, tmp_path_factory):
    """The tiny project after one `dvc repro` of every default stage, committed. Shared: copy it to change it."""
    from tiny_project import copy_project, reproduce_and_commit
    return reproduce_and_commit(copy_project(tiny_built, tmp_path_factory.mktemp("tiny") / "ran"))
