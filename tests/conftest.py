import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def one_thread_per_worker():
    """The two test workers share two cores: torch's default of a thread per core would oversubscribe
    them (tiny tensors gain nothing from a second thread). Stage processes get runtime.threads: 1."""
    import torch
    torch.set_num_threads(1)


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


def built_once(tmp_path_factory, name, build):
    """build(folder) run once per test run, whichever test worker asks first (the others wait on a lock
    and reuse the folder): the shared tiny projects cost their build once, not once per worker."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this test run's folder, above every worker's own
    with open(root / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        folder, done = root / name, root / f"{name}.done"
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that died half-way
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def tiny_built(tmp_path_factory):
    """The tiny project, committed, nothing run yet. Shared: copy it (tiny_project.copy_project) to change it."""
    from tiny_project import make_tiny_repo
    return built_once(tmp_path_factory, "tiny_built", make_tiny_repo)


@pytest.fixture(scope="session")
def tiny_ran(tiny_built, tmp_path_factory):
    """The tiny project after one `dvc repro` of every default stage, committed. Shared: copy it to change it."""
    from tiny_project import copy_project, reproduce_and_commit
    return built_once(tmp_path_factory, "tiny_ran", lambda folder: reproduce_and_commit(copy_project(tiny_built, folder)))


# The files that take longest, started first: with two workers taking whole files (--dist loadfile), a long
# file started last would leave one worker idle while the other finishes it.
LONGEST_FILES = ("test_crossval.py", "test_real_data.py", "test_pipeline.py", "test_kill.py", "test_versioning.py",
                 "test_dvc_safety.py", "test_distributed.py", "test_volumes.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FILES)))  # stable: a file keeps its order
