"""`python -m seglib summary`, the end of `make pipeline`: the headline table, the verdict, and the run
against the committed reference, on a copy of the shared tiny project."""
import json

from bench.scratch import sh
from conftest import run_module
from tiny_project import copy_project


def test_summary_says_identical_or_by_how_much_and_on_what_it_differs(tiny_ran, tmp_path):
    root = copy_project(tiny_ran, tmp_path / "repo")
    out = run_module("seglib", "summary", "--root", root)
    assert out.returncode == 0, out.stderr
    compare = json.loads((root / "metrics/compare.json").read_text())
    unet = compare["models"]["unet"]
    assert f"| unet | {unet['test_fg_dice']:.4f} | {unet['test_fg_dice_postprocessed']:.4f} | {unet['best_epoch']} |" \
        in out.stdout
    assert "Test split: " in out.stdout and ("ahead of" in out.stdout or "no detectable difference" in out.stdout)
    assert out.stdout.rstrip().endswith("Identical to the committed reference: every metric file has the committed bytes.")
    here = json.loads((root / "metrics/train/unet.json").read_text())["trained_on"]
    assert "(cpu, 1 thread, ISA pinned to AVX2)" in here  # the tiny project's runtime.threads

    # a reference made elsewhere: UNet's test Dice 0.0125 higher, trained on another CPU
    trained = ("metrics/train/unet.json", "metrics/train/deeplabv3.json")
    workspace = {p: (root / p).read_bytes() for p in ("metrics/compare.json", *trained)}
    reference = json.loads(workspace["metrics/compare.json"])
    reference["models"]["unet"]["test_fg_dice"] += 0.0125
    (root / "metrics/compare.json").write_text(json.dumps(reference))
    for path in trained:
        (root / path).write_text(json.dumps({**json.loads(workspace[path]), "trained_on": "Other CPU (cpu, 2 threads)"}))
    sh("git", "commit", "-qam", "a reference from another CPU", cwd=root)
    for path, content in workspace.items():
        (root / path).write_bytes(content)
    out = run_module("seglib", "summary", "--root", root)
    assert ("Differs from the committed reference by at most 0.0125 test Dice (3 metric files changed); "
            "the reference was trained on Other CPU (cpu, 2 threads), this run on " + here) in out.stdout, out.stdout
    assert "rerunning on this machine gives identical bytes" in out.stdout

    # equal scores, another field changed (a new key, a rounding elsewhere)
    sh("git", "checkout", "-q", "HEAD~1", "--", "metrics/compare.json", cwd=root)
    sh("git", "commit", "-qm", "the scores as run, trained_on as another CPU", "metrics/compare.json", cwd=root)
    out = run_module("seglib", "summary", "--root", root)
    assert out.stdout.rstrip().endswith("Every model's test Dice equals the committed reference's; 2 metric files "
                                        "differ in other fields (`dvc metrics diff` shows them)."), out.stdout

    missing = run_module("seglib", "summary", "--root", tmp_path)
    assert missing.returncode == 2 and "metrics/compare.json: not found; run `dvc repro` first" in missing.stderr
