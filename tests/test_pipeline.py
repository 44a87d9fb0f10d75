"""The real pipeline with the real dvc binary in a temporary Git repository."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_repo

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
       "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
       "DVC_NO_ANALYTICS": "1"}

TINY = {
    "data": {"val_fraction": 0.2, "test_fraction": 0.2},
    "preprocess": {"base_size": [32, 32]},
    "train": {"epochs": 1, "device": "cpu"},
    "models": {"unet": {"width": 4, "batch_size": 4}, "deeplabv3": {"batch_size": 4}},
    "compare": {"bootstrap": 200, "permutations": 200},
}


def sh(*cmd, cwd, check=True):
    result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def dvc(*args, cwd, check=True):
    return sh(str(BIN / "dvc"), *args, cwd=cwd, check=check)


def merge(base, update):
    for key, value in update.items():
        if isinstance(value, dict):
            merge(base.setdefault(key, {}), value)
        else:
            base[key] = value
    return base


def make_tiny_repo(root, subjects=8, slices=2):
    """A copy of this project on a small synthetic dataset with tiny settings, committed."""
    copy_repo(root)
    sh("git", "init", "-q", cwd=root)
    (root / "data.dvc").unlink()
    sh(sys.executable, "-m", "seglib", "synth", "--out", "data", "--subjects", str(subjects),
       "--slices", str(slices), cwd=root)
    dvc("add", "-q", "data", cwd=root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(merge(params, TINY), sort_keys=False))
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "tiny", cwd=root)
    return root


def ran_stages(output):
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    root = make_tiny_repo(tmp_path_factory.mktemp("pipeline"))
    out = dvc("repro", cwd=root)
    assert ran_stages(out.stdout) == {"split", "preprocess-gray-map", "train@unet", "train@deeplabv3",
                                      "evaluate", "compare"}
    return root


def test_repro_leaves_status_clean_and_writes_outputs(tiny_repo):
    status = dvc("status", cwd=tiny_repo)
    assert "Data and pipelines are up to date" in status.stdout
    headline = json.loads((tiny_repo / "metrics/eval.json").read_text())
    assert headline["model"] == "unet" and len(headline["confusion"]) == 2
    compare = json.loads((tiny_repo / "metrics/compare.json").read_text())
    assert set(compare["models"]) == {"unet", "deeplabv3"}
    assert "unet_minus_deeplabv3" in compare["paired_image_dice"]
    for path in ("plots/train/unet.csv", "plots/eval/deeplabv3.csv", "plots/compare/dice.png",
                 "reports/report.md", "reports/report.html", "plots/train_samples.png", "artifacts/graymap.json"):
        assert (tiny_repo / path).is_file(), path
    html = (tiny_repo / "reports/report.html").read_text()
    assert "data:image/png;base64," in html and "http" not in html.replace("http-equiv", "")


def test_model_switch_reruns_only_evaluation(tiny_repo):
    sh("git", "add", "-A", cwd=tiny_repo)
    sh("git", "commit", "-qm", "reference run", cwd=tiny_repo)
    out = dvc("exp", "run", "-S", "model=deeplabv3", cwd=tiny_repo)
    assert ran_stages(out.stdout) == {"evaluate", "compare"}
    assert json.loads((tiny_repo / "metrics/eval.json").read_text())["model"] == "deeplabv3"
    diff = json.loads(dvc("metrics", "diff", "--json", cwd=tiny_repo).stdout)
    assert diff["metrics/eval.json"]["model"] == {"old": "unet", "new": "deeplabv3"}
    plots = json.loads(dvc("plots", "diff", "--json", cwd=tiny_repo).stdout)
    assert plots


def test_model_param_change_reruns_only_that_model(tiny_repo):
    sh("git", "checkout", "-q", "--", ".", cwd=tiny_repo)
    dvc("checkout", "-q", cwd=tiny_repo, check=False)
    out = dvc("exp", "run", "-S", "models.unet.lr=0.002", cwd=tiny_repo)
    stages = ran_stages(out.stdout)
    assert "train@unet" in stages and "train@deeplabv3" not in stages


def test_same_inputs_give_identical_metric_files(tiny_repo, tmp_path):
    first = {p: (tiny_repo / p).read_bytes() for p in ("metrics/train/unet.json", "metrics/test/deeplabv3.json")}
    sh("git", "checkout", "-q", "--", ".", cwd=tiny_repo)
    dvc("checkout", "-q", cwd=tiny_repo, check=False)
    dvc("repro", "-f", "train@unet", "train@deeplabv3", "evaluate", cwd=tiny_repo)
    for path, content in first.items():
        assert (tiny_repo / path).read_bytes() == content, path
