"""Training in two gloo processes on CPU (DistributedDataParallel): validation counts each image
once, a stopped run resumes exactly, and the train stage under torchrun writes what one process writes."""
import csv
import functools
import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import tiny_meta
from seglib.config import TrainConfig, UNetConfig
from seglib.distributed import World
from seglib.epochlog import read_epoch_log
from seglib.models import build_model
from seglib.resume import TrainingRun
from seglib.train import (ConfusionMatrix, fit, make_loaders, run_epoch, segmentation_loss, summed_over,
                          validation_step)
from test_models_train import StopAfter, _tiny_arrays
from tiny_project import copy_project

from bench.scratch import dvc, set_params, sh

CPU = torch.device("cpu")
DATA = {"train": _tiny_arrays(12, 0), "val": _tiny_arrays(7, 1)}  # 7: the two processes get 4 and 3
CFG = UNetConfig(width=8, batch_size=4, lr=3e-3)
TRAIN = TrainConfig(epochs=3, hflip=0.5, vflip=0.5, scale_jitter=0.1, rotate_degrees=10.0)


def _validate(world, batch_size):
    """Counts, mean loss and images per process of one validation pass over DATA's val images."""
    torch.manual_seed(0)
    cfg = UNetConfig(width=4, batch_size=batch_size)
    model = build_model(cfg, 2).eval()  # the same weights in every process
    _, loader = make_loaders(DATA, cfg, TrainConfig(), tiny_meta(), TrainingRun("t", world=world), CPU)
    matrix = ConfusionMatrix(2, CPU)
    step = validation_step(model, functools.partial(segmentation_loss, kind="ce_dice"), "fp32")
    loss_sum, seen = run_epoch(loader, step, matrix, "")
    loss = summed_over(world, matrix, loss_sum, seen)
    return {"counts": matrix.numpy(), "loss": loss, "images": world.gather(seen)}


def _fit(world, files, stop=None):
    run = StopAfter(stop, world=world, **files) if stop else TrainingRun("t", world=world, **files)
    result = fit(DATA, CFG, TRAIN, CPU, tiny_meta(), run)
    return {"history": result.history, "best_epoch": result.best_epoch, "weights": result.model.state_dict()}


def _process(rank, size, store, task, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    try:
        try:
            result = task(World(rank, size, rank, size))
        except KeyboardInterrupt:
            result = "stopped"
        if rank == 0:
            torch.save(result, out)
    finally:
        dist.destroy_process_group()


def in_two_processes(tmp_path, task):
    """What rank 0 of two gloo processes running task(world) returned."""
    store, out = tmp_path / f"store{len(list(tmp_path.iterdir()))}", tmp_path / "result.pt"
    mp.spawn(_process, args=(2, str(store), task, str(out)), nprocs=2, join=True)
    return torch.load(out, weights_only=False)


def test_validation_in_two_processes_counts_every_image_once(tmp_path):
    single = _validate(World(), batch_size=2)
    double = in_two_processes(tmp_path, functools.partial(_validate, batch_size=4))  # 2 per process: same batches
    assert double["images"] == [4, 3]  # no padding: unlike DistributedSampler, no image is counted twice
    assert single["images"] == [7]
    np.testing.assert_array_equal(double["counts"], single["counts"])
    assert double["counts"].sum() == 7 * 32 * 32
    assert double["loss"] == pytest.approx(single["loss"], rel=1e-6)


def test_a_two_process_run_stopped_after_epoch_two_resumes_to_the_uninterrupted_weights(tmp_path):
    reference = in_two_processes(tmp_path, functools.partial(_fit, files={}))
    files = {"log": tmp_path / "log", "state": tmp_path / "state.pt", "key": "k"}
    assert in_two_processes(tmp_path, functools.partial(_fit, files=files, stop=2)) == "stopped"
    assert [r["epoch"] for r in read_epoch_log(files["log"])] == [1, 2]  # written once, by the main process
    assert len(torch.load(files["state"], weights_only=False)["random"]) == 2  # each process's generators
    resumed = in_two_processes(tmp_path, functools.partial(_fit, files=files))
    assert repr(resumed["history"]) == repr(reference["history"])
    for name, tensor in reference["weights"].items():
        assert torch.equal(resumed["weights"][name], tensor), name
    single = fit(DATA, CFG, TRAIN, CPU, tiny_meta(), TrainingRun("t"))  # the same form as one process's
    assert [row.keys() for row in single.history] == [row.keys() for row in reference["history"]]


def test_train_stage_under_torchrun_writes_what_one_process_writes(tiny_built, tmp_path):
    root = copy_project(tiny_built, tmp_path / "repo")
    set_params(root, {"train.epochs": 2})
    dvc("repro", "train@unet", cwd=root)
    outputs = ("metrics/train/unet.json", "plots/train/unet/metrics.json", "plots/train/unet/plots/metrics/val/dice.tsv", "plots/train/unet/plots/metrics/train/loss.tsv")
    single = {p: (root / p).read_text() for p in outputs}
    log_files = sorted(p.relative_to(root) for p in (root / "plots/train/unet").rglob("*"))
    set_params(root, {"runtime.processes": 2})
    out = dvc("repro", "train@unet", cwd=root).stdout
    assert out.count("[unet] epoch 2/2") == 1  # one process reports
    metrics = json.loads((root / outputs[0]).read_text())
    assert metrics.keys() == json.loads(single[outputs[0]]).keys()
    assert metrics["val"].keys() == json.loads(single[outputs[0]])["val"].keys()
    rows = list(csv.DictReader((root / outputs[2]).open(), delimiter="\t"))
    assert [list(r) for r in rows] == [list(r) for r in csv.DictReader(single[outputs[2]].splitlines(), delimiter="\t")]
    assert [r["step"] for r in rows] == ["1", "2"]  # one row per epoch: only the main process logs
    assert sorted(p.relative_to(root) for p in (root / "plots/train/unet").rglob("*")) == log_files
    from seglib.checkpoint import load_checkpoint
    load_checkpoint(root / "models/unet/model.pt", CPU)
    assert not (root / "logs/resume/unet.pt").exists()
    assert "Data and pipelines are up to date" in dvc("status", "train@unet", cwd=root).stdout
    assert "logs/" not in sh("git", "status", "--porcelain", "--untracked-files=all", cwd=root).stdout


def test_a_batch_that_does_not_split_over_the_processes_is_refused_before_any_starts(tiny_built, tmp_path):
    from seglib.errors import SegError
    from seglib.train import per_process_batch
    assert per_process_batch(UNetConfig(batch_size=8), 2, "unet") == 4
    with pytest.raises(SegError, match=r"models.unet.batch_size: 4 .* 4 processes \(runtime.processes\).*multiple of 8"):
        per_process_batch(UNetConfig(batch_size=4), 4, "unet")
    root = copy_project(tiny_built, tmp_path / "repo")
    set_params(root, {"runtime.processes": 3})
    out = dvc("repro", "train@unet", cwd=root, check=False)
    assert out.returncode != 0
    assert "models.unet.batch_size: 4 images per step do not split into 3 processes" in out.stderr
    assert "torch/distributed" not in out.stderr  # refused before torchrun started anything
