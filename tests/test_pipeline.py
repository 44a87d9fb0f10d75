"""The real pipeline with the real dvc binary in a temporary Git repository."""
import json
import re
import time

import browser
import pytest
import yaml

from bench.scratch import dvc, set_params, sh
from test_structure import plotted_model
from tiny_project import copy_project, ran_stages


@pytest.fixture(scope="module")
def tiny_repo(tiny_ran, tmp_path_factory):
    """A copy of the shared reproduced project: these tests change it, one after another."""
    return copy_project(tiny_ran, tmp_path_factory.mktemp("pipeline") / "repo")


def test_repro_leaves_status_clean_and_writes_outputs(tiny_repo):
    status = dvc("status", cwd=tiny_repo)
    assert "Data and pipelines are up to date" in status.stdout
    headline = json.loads((tiny_repo / "metrics/eval.json").read_text())
    assert headline["model"] == "unet" and len(headline["confusion"]) == 2
    compare = json.loads((tiny_repo / "metrics/compare.json").read_text())
    assert set(compare["models"]) == {"unet", "deeplabv3"}
    assert "unet_minus_deeplabv3" in compare["paired_image_dice"]
    for path in ("plots/train/unet/metrics.json", "plots/eval/deeplabv3.csv", "plots/compare/dice.png",
                 "reports/report.md", "reports/report.html", "plots/train_samples.png", "artifacts/graymap.json"):
        assert (tiny_repo / path).is_file(), path
    html = (tiny_repo / "reports/report.html").read_text()
    assert "data:image/png;base64," in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing loaded from a network


def test_model_switch_reruns_only_the_comparison(tiny_repo):
    out = dvc("exp", "run", "-S", "model=deeplabv3", cwd=tiny_repo)
    assert ran_stages(out.stdout) == {"check-params", "compare"}  # the check runs first, on any change
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
    sh("git", "checkout", "-q", "--", ".", cwd=tiny_repo)
    dvc("checkout", "-q", cwd=tiny_repo, check=False)
    outputs = ("metrics/train/unet.json", "metrics/test/deeplabv3.json", "models/unet/model.pt",
               "models/deeplabv3/model.pt", "reports/report.md", "dvc.lock")
    # and the epoch logs (DVCLive's files): no timestamps
    logs = sorted(p.relative_to(tiny_repo) for p in (tiny_repo / "plots/train").rglob("*") if p.is_file())
    assert {"plots/train/unet/metrics.json", "plots/train/deeplabv3/plots/metrics/val/dice.tsv"} <= set(map(str, logs))
    first = {p: (tiny_repo / p).read_bytes() for p in (*outputs, *logs)}
    dvc("repro", "-f", "train@unet", "train@deeplabv3", "evaluate@unet", "evaluate@deeplabv3", "compare",
        cwd=tiny_repo)
    for path, content in first.items():  # checkpoints too: dvc.lock does not churn on a retrain
        assert (tiny_repo / path).read_bytes() == content, path


@pytest.mark.skipif(browser.CHROMIUM is None, reason="no chromium installed (.ci/run installs Debian's)")
def test_pages_render_offline_in_a_real_browser(tiny_repo, tmp_path):
    dvc("plots", "show", "-o", tmp_path / "offline", cwd=tiny_repo)
    page = tmp_path / "offline" / "index.html"
    assert "cdn.jsdelivr" not in page.read_text()
    dom = browser.rendered_dom(page)
    charts = dom.count('class="vega-embed')
    assert charts >= 4 and dom.count("<canvas") >= charts, dom[:2000]
    # the same plots on DVC's default page (Vega from a CDN) draw nothing with the network off
    from dvc_render.html import PAGE_HTML
    (tmp_path / "cdn.html").write_text(PAGE_HTML)
    dvc("plots", "show", "-o", tmp_path / "cdn", "--html-template", tmp_path / "cdn.html", cwd=tiny_repo)
    assert "<canvas" not in browser.rendered_dom(tmp_path / "cdn" / "index.html")
    # the report: its embedded figures draw (a blank page would be almost all white)
    assert browser.screenshot_ink(tiny_repo / "reports/report.html", tmp_path / "report.png") > 0.05


def test_misspelt_section_fails_dvc_repro_in_seconds(tiny_repo):
    sh("git", "checkout", "-q", "--", ".", cwd=tiny_repo)
    params = tiny_repo / "params.yaml"
    original = params.read_text()
    params.write_text(original + "trian:\n  epochs: 3\n")
    try:
        out = dvc("repro", cwd=tiny_repo, check=False)
        assert out.returncode != 0
        assert "trian: unknown top-level key in params.yaml (did you mean 'train'?)" in out.stdout + out.stderr
        assert not ran_stages(out.stdout) & {"train@unet", "train@deeplabv3"}
    finally:
        params.write_text(original)


def test_a_third_and_fourth_model_are_models_entries_and_plot_lines_and_join_the_paired_statistics(tiny_repo):
    """The recipe the README gives: add the entries (a UNet and a segmentation-models-pytorch FPN), add
    their lines to the top-level plots, `dvc repro`: only they train; compare pairs all four and sets
    their cost beside their scores. A wrong encoder name or encoder file then stops with one message
    and exit 2 before any training."""
    import torch
    import torchvision

    from conftest import run_module
    from seglib.config import LibraryConfig
    from seglib.models import build_model, model_cost
    sh("git", "checkout", "-q", "--", ".", cwd=tiny_repo)
    dvc("checkout", "-q", cwd=tiny_repo, check=False)
    set_params(tiny_repo, {"models.small": {"arch": "unet", "width": 4, "depth": 2, "batch_size": 4},
                           "models.fpn": {"arch": "smp", "architecture": "FPN", "encoder": "resnet18",
                                          "batch_size": 4}})
    pipeline = yaml.safe_load((tiny_repo / "dvc.yaml").read_text())
    for plot in pipeline["plots"]:
        (spec,) = plot.values()
        (unet,) = [path for path in spec["y"] if plotted_model(path) == "unet"]
        for name in ("small", "fpn"):
            spec["y"][unet.replace("/unet/", f"/{name}/").replace("/unet.csv", f"/{name}.csv")] = spec["y"][unet]
    (tiny_repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    try:
        out = dvc("repro", cwd=tiny_repo)
        assert ran_stages(out.stdout) == {"check-params", "compare"} | {
            f"{stage}@{m}" for stage in ("train", "evaluate") for m in ("small", "fpn")}
        result = json.loads((tiny_repo / "metrics/compare.json").read_text())
        names = ["unet", "deeplabv3", "small", "fpn"]
        assert list(result["models"]) == names
        assert json.loads((tiny_repo / "metrics/test/fpn.json").read_text())["model"] == "fpn"
        assert set(result["paired_image_dice"]) == {f"{a}_minus_{b}" for i, a in enumerate(names)
                                                    for b in names[i + 1:]}
        assert all(p["n"] > 0 for p in result["paired_image_dice"].values())
        trained = {m: json.loads((tiny_repo / f"metrics/train/{m}.json").read_text()) for m in names}
        cost = model_cost(build_model(LibraryConfig(architecture="FPN", encoder="resnet18"), 2), (32, 32))
        assert (trained["fpn"]["parameters"], trained["fpn"]["gflops_per_image"], trained["fpn"]["feature_map"]) == \
            (cost["parameters"], cost["gflops"], cost["feature_map"])
        # equal compute: each model's best validation Dice within the cheapest run's TFLOPs (1 epoch each here)
        compute = result["equal_compute"]
        assert compute["budget_tflop"] == min(m["train_tflop"] for m in compute["models"].values())
        cheapest = [m for m, c in compute["models"].items() if c["train_tflop"] == compute["budget_tflop"]]
        assert cheapest and all(compute["models"][m]["val_fg_dice_at_budget"] == result["models"][m]["val_fg_dice"]
                                for m in cheapest)
        report = (tiny_repo / "reports/report.md").read_text()
        maps = " | ".join(f"{h} x {w}" for h, w in (trained[m]["feature_map"] for m in names))
        assert f"| coarsest feature map | {maps} |" in report and "val_dice_by_compute.png" in report
        summary = run_module("seglib", "summary", "--root", tiny_repo).stdout
        assert f"| fpn | {result['models']['fpn']['test_fg_dice']:.4f} |" in summary

        before = (tiny_repo / "metrics/train/fpn.json").read_bytes()
        set_params(tiny_repo, {"models.fpn.encoder": "resnet19"})
        out = run_module("stages.check_params", "--params", "params.yaml", "--images", "data/images",
                         "--out", tiny_repo / "checked.tmp", cwd=tiny_repo)
        assert out.returncode == 2 and "models.fpn.encoder: unknown encoder 'resnet19'" in out.stderr
        set_params(tiny_repo, {"models.fpn.encoder": "resnet18", "models.fpn.encoder_weights": "weights/wrong.pth"})
        torch.save(torchvision.models.resnet34(weights=None).state_dict(), tiny_repo / "weights/wrong.pth")
        args = ["--model", "fpn", "--prepared", "artifacts/prepared", "--out", "models/fpn",
                "--metrics", "metrics/train/fpn.json", "--log", "plots/train/fpn",
                "--timing", "logs/timing/fpn.json", "--resume", "logs/resume/fpn.pt"]
        out = run_module("stages.train", *args, cwd=tiny_repo)
        assert out.returncode == 2 and "weights/wrong.pth: not the encoder of this model" in out.stderr
        assert "epoch 1/" not in out.stdout and (tiny_repo / "metrics/train/fpn.json").read_bytes() == before
    finally:
        (tiny_repo / "weights/wrong.pth").unlink(missing_ok=True)
        sh("git", "checkout", "-q", "--", ".", cwd=tiny_repo)
        dvc("checkout", "-q", cwd=tiny_repo, check=False)


def test_queued_experiments_both_finish_and_show(tiny_ran, tmp_path):
    """`dvc exp run --queue` + `dvc queue start`: each experiment runs in its own temporary copy of the
    committed repository (untracked files do not travel), so the reference run is committed first."""
    root = copy_project(tiny_ran, tmp_path / "queue")
    for lr in ("0.002", "0.003"):
        dvc("exp", "run", "--queue", "-S", f"models.unet.lr={lr}", cwd=root)
    dvc("queue", "start", "--jobs", "1", cwd=root)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = dvc("queue", "status", cwd=root).stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(2)
    assert status.count("Success") == 2, status
    shown = json.loads(dvc("exp", "show", "--json", cwd=root).stdout)
    experiments = [exp for rev in shown for exp in (rev.get("experiments") or [])]
    lrs = sorted(exp["revs"][0]["data"]["params"]["params.yaml"]["data"]["models"]["unet"]["lr"] for exp in experiments)
    assert lrs == [0.002, 0.003], experiments
    for exp in experiments:
        metrics = exp["revs"][0]["data"]["metrics"]
        assert "metrics/test/unet.json" in metrics and "metrics/eval.json" in metrics
