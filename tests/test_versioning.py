"""The README's data-versioning steps, with the real dvc binary and a local-directory remote."""
import json
import shutil

from bench.scratch import dvc, sh
from tiny_project import copy_project, ran_stages


def test_push_pull_and_switching_dataset_versions(tiny_ran, tmp_path):
    repo = copy_project(tiny_ran, tmp_path / "origin")  # data v1 and its reference run, committed
    dvc("remote", "add", "-d", "storage", tmp_path / "remote", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "remote", cwd=repo)
    v1 = (repo / "metrics/test/unet.json").read_text()
    dvc("push", cwd=repo)

    # a second fresh clone: dvc pull brings data, models and arrays; repro has nothing to redo
    sh("git", "clone", "-q", repo, tmp_path / "clone", cwd=tmp_path)
    clone = tmp_path / "clone"
    dvc("pull", cwd=clone)
    assert (clone / "data/images").is_dir() and (clone / "models/unet/model.pt").is_file()
    assert "up to date" in dvc("status", cwd=clone).stdout
    assert ran_stages(dvc("repro", cwd=clone).stdout) == set()
    assert sh("git", "status", "--porcelain", cwd=clone).stdout == ""

    # bring other data: replace the folder, dvc add, repro, commit
    shutil.rmtree(repo / "data")
    sh("python", "-m", "seglib", "synth", "--out", "data", "--subjects", "9", "--slices", "2", "--seed", "5", cwd=repo)
    dvc("add", "-q", "data", cwd=repo)
    dvc("repro", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "data v2", cwd=repo)
    assert json.loads((repo / "reports/dataset_check.json").read_text())["images"] == 18

    # back to v1: the run cache restores v1's outputs without retraining, and its metrics
    sh("git", "checkout", "-q", "HEAD~1", "--", "data.dvc", cwd=repo)
    dvc("checkout", "-q", cwd=repo)
    out = dvc("repro", cwd=repo)
    assert "train@unet" not in ran_stages(out.stdout)
    assert (repo / "metrics/test/unet.json").read_text() == v1
