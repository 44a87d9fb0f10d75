"""The tiny DVC project that the end-to-end tests share: built and reproduced once per test run
(fixtures `tiny_built` and `tiny_ran` in conftest.py), copied by each test that changes it."""
import shutil

from bench.scratch import dvc, scratch_project, sh

TINY = {
    "data.val_fraction": 0.2, "data.test_fraction": 0.2,
    "preprocess.base_size": [32, 32],
    "train.epochs": 1, "runtime.device": "cpu",
    # one thread: the two test workers share two cores, and tiny tensors gain nothing from a second thread
    # (an epoch 3.7x faster with both workers busy)
    "runtime.threads": 1,
    "evaluate.overlays": 1,  # a worst and a best image: the figure is drawn, in a third of the time
    "models.unet.width": 4, "models.unet.batch_size": 4, "models.deeplabv3.batch_size": 4,
    # the defaults give DeepLabV3 its own epochs and a 2x input: here mechanics, not fairness, are tested
    "models.deeplabv3.epochs": None, "models.deeplabv3.input_scale": 1.0,
    "compare.bootstrap": 200, "compare.permutations": 200,
}
DEFAULT_STAGES = {"check-params", "split", "preprocess-gray-map", "train@unet", "train@deeplabv3",
                  "evaluate@unet", "evaluate@deeplabv3", "compare"}


def make_tiny_repo(root, subjects=8, slices=2, seed=0, overrides=None, volumes=False):
    """A committed copy of this project on a small synthetic dataset (slices, or volumes) with tiny settings."""
    return scratch_project(root, overrides={**TINY, **(overrides or {})},
                           synth_args=["--subjects", subjects, "--slices", slices, "--seed", seed]
                           + (["--volumes"] if volumes else []))


def ran_stages(output):
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def copy_project(source, dest):
    """A private copy of a shared project (Git history, DVC cache and workspace) for a test that changes it."""
    shutil.copytree(source, dest, symlinks=True)
    return dest


def reproduce_and_commit(root):
    """`dvc repro` of every default stage, committed as the reference run."""
    ran = ran_stages(dvc("repro", cwd=root).stdout)
    assert ran == DEFAULT_STAGES, ran
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "reference run", cwd=root)
    return root
