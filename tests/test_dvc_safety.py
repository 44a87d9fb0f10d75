"""A wrong setting through the real dvc binary: `dvc repro` and `dvc exp run` stop with one message and
a non-zero exit, and no committed output is removed or changed (DVC removes a stage's outputs just before
running it; the check-params stage runs first)."""
import pytest
import torch

from bench.scratch import dvc, set_params, sh
from seglib.config import UNetConfig
from seglib.models import build_model
from tiny_project import copy_project, ran_stages

RESULTS = ("artifacts", "metrics", "models", "plots", "reports")


def results(root):
    """Every file of the pipeline's outputs, path -> bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for folder in RESULTS for p in sorted((root / folder).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def repo(tiny_ran, tmp_path_factory):
    """A copy of the reproduced project; each test restores params.yaml from Git."""
    return copy_project(tiny_ran, tmp_path_factory.mktemp("dvc_safety") / "repo")


@pytest.mark.parametrize("command, message", [
    # compare's own setting: before the check stage, DVC removed compare's 12 outputs and then compare failed
    (("repro",), "compare.bootstrap: must be 100 to 1000000, got 10"),
    # a model's setting through an experiment: it removed models/unet, its metrics and epoch log
    (("exp", "run", "-S", "models.unet.lr=abc"), "models.unet.lr: expected float"),
], ids=["repro", "exp-run"])
def test_a_wrong_setting_removes_no_committed_output(repo, command, message):
    before = results(repo)
    if command == ("repro",):
        (repo / "params.yaml").write_text((repo / "params.yaml").read_text().replace("bootstrap: 200", "bootstrap: 10"))
    try:
        out = dvc(*command, cwd=repo, check=False)
        assert out.returncode != 0
        assert message in out.stderr and "No stage ran and no output was removed" in out.stderr, out.stderr
        assert ran_stages(out.stdout) == {"check-params"}
        assert results(repo) == before
        assert sh("git", "status", "--porcelain", cwd=repo).stdout == " M params.yaml\n"
    finally:
        sh("git", "checkout", "--", "params.yaml", cwd=repo)
    assert "Data and pipelines are up to date" in dvc("status", cwd=repo).stdout


def test_a_changed_starting_weights_file_retrains_its_model(repo, tmp_path):
    """models.<name>.weights is a dependency: replacing the file's content makes `dvc repro` retrain."""
    root = copy_project(repo, tmp_path / "weights")
    torch.manual_seed(1)
    torch.save(build_model(UNetConfig(width=4), 2).state_dict(), root / "weights/start.pt")
    set_params(root, {"models.unet.weights": "weights/start.pt"})
    assert ran_stages(dvc("repro", cwd=root).stdout) >= {"train@unet", "evaluate@unet"}
    first = (root / "models/unet/model.pt").read_bytes()
    assert "Data and pipelines are up to date" in dvc("status", cwd=root).stdout
    torch.manual_seed(2)
    torch.save(build_model(UNetConfig(width=4), 2).state_dict(), root / "weights/start.pt")
    ran = ran_stages(dvc("repro", cwd=root).stdout)
    assert "train@unet" in ran and "train@deeplabv3" in ran  # every model depends on the folder
    assert (root / "models/unet/model.pt").read_bytes() != first
