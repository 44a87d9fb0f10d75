"""The end of a run in a few lines: each model's test Dice, the paired verdict, and how the run stands
against the committed reference (the metric files of Git's HEAD).

Identical metric files: identical to the reference. Otherwise the largest change of a model's test
foreground Dice, and what each was trained on: another CPU model moves results by about 0.01
(docs/determinism.md), the same kind of machine gives identical bytes.
"""
import json
import subprocess
from pathlib import Path

from seglib.errors import SegError
from seglib.report import format_score, number_or_map
from seglib.stats import verdict

DICE_KEYS = ("test_fg_dice", "test_fg_dice_postprocessed")


def committed(root, path):
    """The bytes of `path` at Git's HEAD in `root`, or None (no Git, no commit, not tracked)."""
    try:
        out = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=root, capture_output=True, check=False)
    except OSError:
        return None
    return out.stdout if out.returncode == 0 else None


def train_minutes(root, name):
    """Minutes train@<name> took, from its timing log (no DVC output: seconds differ on every run)."""
    path = Path(root) / "logs/timing" / f"{name}.json"
    try:
        return f"{json.loads(path.read_text())['train_seconds'] / 60:.1f}"
    except (OSError, ValueError, KeyError, TypeError):
        return "-"


def headline_lines(result, root="."):
    """A table of each model's test Dice, best epoch, cost (GFLOPs per image, coarsest feature map,
    training minutes), then the verdict of each pair of models (and of the cross-validation, where it ran)."""
    lines = ["| model | test Dice (fg) | post-processed | best epoch | GFLOPs/image | feature map | train min |",
             "|---|---|---|---|---|---|---|"]
    for name, summary in result["models"].items():
        lines.append(f"| {name} | {format_score(summary['test_fg_dice'])} | "
                     f"{format_score(summary['test_fg_dice_postprocessed'])} | {summary['best_epoch']} | "
                     f"{number_or_map(summary.get('gflops_per_image'))} | {number_or_map(summary.get('feature_map'))} | "
                     f"{train_minutes(root, name)} |")
    lines.append("")
    for pair, stat in result["paired_image_dice"].items():
        lines.append(f"Test split: {verdict(*pair.split('_minus_'), stat)}.")
    for stat in result.get("crossval", {}).get("paired_subject_dice", {}).values():
        lines.append(f"Cross-validation: {stat['verdict']}.")
    return lines


def _bytes(path):
    return path.read_bytes() if path.is_file() else None


def _trained_on(metrics):
    return sorted({m.get("trained_on", "an unrecorded machine") for m in metrics.values()})


def reference_sentence(root, result, metric_files):
    """One sentence: identical to the committed reference, or by how much and on what it differs."""
    before = {p: committed(root, p) for p in metric_files}  # one `git show` per file
    changed = [p for p in metric_files if before[p] != _bytes(Path(root) / p)]
    if not changed:
        return "Identical to the committed reference: every metric file has the committed bytes."
    ref_bytes = before.get("metrics/compare.json")
    if ref_bytes is None:
        return "No committed reference to compare with (metrics/compare.json is not in Git's HEAD)."
    reference = json.loads(ref_bytes)
    shared = set(result["models"]) & set(reference["models"])
    diffs = [abs(result["models"][m][k] - reference["models"][m][k]) for m in shared for k in DICE_KEYS
             if result["models"][m][k] is not None and reference["models"][m][k] is not None]
    if diffs and max(diffs) == 0:
        return (f"Every model's test Dice equals the committed reference's; {len(changed)} metric files differ "
                "in other fields (`dvc metrics diff` shows them).")
    names = [p for p in metric_files if p.startswith("metrics/train/")]
    here = _trained_on({p: json.loads(_bytes(Path(root) / p) or b"{}") for p in names})
    there = _trained_on({p: json.loads(before[p] or b"{}") for p in names})
    if here == there:
        cause = (f"both trained on {', '.join(here)}, so the inputs (data, params or code) differ: "
                 "`dvc metrics diff` shows every change")
    else:
        cause = (f"the reference was trained on {', '.join(there)}, this run on {', '.join(here)}: "
                 "CPU models differ in the last bits of training, so this is expected "
                 "(docs/determinism.md); rerunning on this machine gives identical bytes")
    largest = f"by at most {max(diffs):.4f} test Dice" if diffs else "in models the reference does not hold"
    return f"Differs from the committed reference {largest} ({len(changed)} metric files changed); {cause}."


def summary(root="."):
    """The lines `make pipeline` ends with."""
    root = Path(root)
    path = root / "metrics/compare.json"
    if not path.is_file():
        raise SegError(f"{path}: not found; run `dvc repro` first")
    result = json.loads(path.read_text())
    tracked = subprocess.run(["git", "ls-tree", "-r", "--name-only", "HEAD", "metrics"], cwd=root,
                             capture_output=True, text=True, check=False).stdout.split()
    metric_files = sorted({p.relative_to(root).as_posix() for p in (root / "metrics").rglob("*.json")}
                          | {p for p in tracked if p.endswith(".json")})
    return headline_lines(result, root) + ["", reference_sentence(root, result, metric_files)]
