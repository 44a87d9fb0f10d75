"""The epoch log of a training run, in DVCLive's layout, so `dvc exp show` lists a running
experiment's step and metrics, `dvc plots show`/`diff` and the VS Code extension draw its curves live:

    <log>/metrics.json                   the last epoch (DVCLive's summary, with "step")
    <log>/plots/metrics/<part>/<m>.tsv   step (= epoch) and one metric per file: train/loss, val/dice, lr, ...

A row of the log is {epoch, images_seen, lr, train_<m>..., val_<m>...}. After
every epoch the whole history is rendered by DVCLive in a scratch folder and each
file moved into place whole (DVCLive itself truncates and rewrites in place,
which a kill can tear), so a resumed run, which holds the history of its
epochs, continues the same log, and identical runs give identical bytes (no
timestamps).
"""
import csv
import tempfile
from pathlib import Path

from seglib.io import write_bytes

STEP = "epoch"


def _metric_name(key):
    """train_loss -> train/loss (a folder per part in DVCLive's plots); lr, images_seen unchanged."""
    part, _, name = key.partition("_")
    return f"{part}/{name}" if part in ("train", "val") and name else key


def write_epoch_log(folder, history):
    """`history` (rows, epoch 1 first) as DVCLive writes it, into `folder`, file by file atomically."""
    from dvclive import Live  # imported by the training processes only
    with tempfile.TemporaryDirectory() as scratch:
        live = Live(scratch, resume=False, save_dvc_exp=False, dvcyaml=None, report=None)
        for row in history:
            live.step = int(row[STEP])
            for key, value in row.items():
                if key != STEP:
                    live.log_metric(_metric_name(key), value)
            live.make_summary()
        for path in sorted(Path(scratch).rglob("*")):
            if path.is_file():
                write_bytes(Path(folder) / path.relative_to(scratch), path.read_bytes())


def read_epoch_log(folder):
    """The rows of an epoch log (write_epoch_log's inverse): {epoch, images_seen, lr, train_*, val_*} per
    step, numbers as floats (epoch and images_seen as written)."""
    rows = {}
    root = Path(folder) / "plots" / "metrics"
    for path in sorted(root.rglob("*.tsv")):
        key = "_".join(path.relative_to(root).with_suffix("").parts)
        with open(path, newline="") as handle:
            for record in csv.DictReader(handle, delimiter="\t"):
                step = int(record["step"])
                rows.setdefault(step, {STEP: step})[key] = _number(record[path.stem])
    return [rows[step] for step in sorted(rows)]


def _number(text):
    try:
        return int(text)
    except ValueError:
        return float(text)
