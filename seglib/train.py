"""Training, read top to bottom: a step for training and one for validation, one epoch body
that runs either, and fit. Writes no files.

Train metrics come from the training forward pass itself (train-mode
predictions, accumulated in one confusion matrix), not from a second pass.
In several processes (seglib.distributed) each trains on its share of every
batch, validates its share of the images, and the confusion matrices and
losses are summed over the processes, so each image counts exactly once.
"""
import copy
import dataclasses
import functools
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm import tqdm

from seglib import postprocess
from seglib.checkpoint import load_encoder_weights, load_local_weights
from seglib.errors import SegError
from seglib.folds import training_subset
from seglib.inference import Predictor, forward, to_device
from seglib.metrics import EPOCH_METRICS, scores
from seglib.models import build_model, count_parameters, min_input_side
from seglib.runtime import check_precision
from seglib.transforms import Augment, normalise


class PreparedDataset(Dataset):
    """Prepared uint8 arrays -> (normalised float image (1, H, W), class-id mask (H, W))."""

    def __init__(self, arrays, meta):
        self.images = torch.from_numpy(arrays["images"])
        self.masks = torch.from_numpy(arrays["masks"]).long()
        self.meta = meta

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return normalise(self.images[i], self.meta.mean, self.meta.std).unsqueeze(0), self.masks[i]


def cosine_factor(epoch, epochs, lrf):
    """The original project's schedule: lr * ((1 + cos(pi e / E)) / 2 * (1 - lrf) + lrf)."""
    return (1 + math.cos(math.pi * epoch / epochs)) / 2 * (1 - lrf) + lrf


def segmentation_loss(logits, target, kind):
    """Cross-entropy, plus soft Dice over the foreground classes for kind='ce_dice'; in float32 under any precision."""
    logits = logits.float()
    loss = F.cross_entropy(logits, target)
    if kind == "ce_dice":
        probs = logits.softmax(1)
        onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
        inter = (probs * onehot).sum((0, 2, 3))
        total = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
        loss = loss + 1 - ((2 * inter + 1) / (total + 1))[1:].mean()
    return loss


class ConfusionMatrix:
    """C x C pixel counts (truth row, prediction column) accumulated where the tensors live.

    Counting on the device leaves one copy to the host per epoch, not one per batch.
    """

    def __init__(self, num_classes, device):
        self.num_classes = num_classes
        self.counts = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)

    def update(self, truth, pred):
        self.counts += torch.bincount((truth.flatten() * self.num_classes + pred.flatten()).long(),
                                      minlength=self.num_classes ** 2)

    def numpy(self):
        return self.counts.reshape(self.num_classes, self.num_classes).cpu().numpy()


def grad_scaler(device, precision):
    """fp16 gradients scaled so small ones do not flush to zero; a pass-through for fp32 and bf16."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def training_step(model, criterion, optimizer, augment, precision, scaler):
    """step(images, masks) -> (logits, loss, masks): augment on the host, one optimisation step on the
    device. `scaler` (torch.amp.GradScaler) scales fp16 gradients and passes everything else through."""
    device = next(model.parameters()).device

    def step(images, masks):
        images, masks = augment(images, masks)
        images, masks = to_device(images, device), masks.to(device, non_blocking=True)
        logits = forward(model, images, precision)
        loss = criterion(logits, masks)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return logits, loss, masks
    return step


def validation_step(model, criterion, precision):
    """step(images, masks) -> (logits, loss, masks) without gradients."""
    device = next(model.parameters()).device

    @torch.no_grad()
    def step(images, masks):
        images, masks = to_device(images, device), masks.to(device, non_blocking=True)
        logits = forward(model, images, precision)
        return logits, criterion(logits, masks), masks
    return step


def run_epoch(loader, step, matrix, desc):
    """One pass of `step` over `loader`; returns (loss summed over images, images), and counts pixels into `matrix`."""
    total, seen = 0.0, 0
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None)
    for images, masks in bar:
        logits, loss, masks = step(images, masks)
        total, seen = total + loss.item() * len(images), seen + len(images)
        matrix.update(masks, logits.argmax(1))
        if not bar.disable:  # the running scores cost a copy to the host; only a terminal shows them
            s = scores(matrix.numpy())
            bar.set_postfix(loss=f"{total / seen:.3f}", iou=f"{s['fg_iou']:.3f}", dice=f"{s['fg_dice']:.3f}")
    return total, seen


def summed_over(world, matrix, loss_sum, seen):
    """Sums `matrix` over every process in place; returns the mean loss over all their images."""
    world.sum(matrix.counts)
    totals = world.sum(torch.tensor([loss_sum, seen], dtype=torch.float64, device=matrix.counts.device))
    return totals[0].item() / totals[1].item()


def _epoch_row(prefix, loss, matrix):
    s = scores(matrix)
    values = {"loss": loss, "accuracy": s["accuracy"], **{k: s[f"fg_{k}"] for k in EPOCH_METRICS[2:]}}
    return {f"{prefix}_{k}": values[k] for k in EPOCH_METRICS}


@dataclasses.dataclass
class FitResult:
    history: list        # one dict per epoch: epoch, lr, train_*, val_*
    best_epoch: int
    best_scores: dict    # scores() of the validation confusion matrix at the best epoch
    model: torch.nn.Module
    parameters: int
    seconds_per_epoch: list


@dataclasses.dataclass(frozen=True)
class TrainingSubset:
    """A learning-curve run's training images: the split units it keeps, and the images each epoch
    draws (crossval.curve_budget: the full training part's count, or its own)."""
    units: tuple
    epoch_images: int


def subset_arrays(arrays, images):
    """Prepared arrays of `images` only; a volume's planes are named <image>#<plane>."""
    keep = [i for i, name in enumerate(map(str, arrays["names"])) if name in images or name.rsplit("#", 1)[0] in images]
    return {key: value[keep] for key, value in arrays.items()}


def curve_subset(train, fold, subjects, seed, budget, prepared):
    """A learning-curve run's training arrays: `train` (a fold's prepared training part, in `prepared`)
    cut to `subjects` of its split units, the nested subset seeded by data.seed; and the
    TrainingSubset that keys its resume state, each epoch drawing the full part's image count
    (crossval.curve_budget "steps") or its own ("epochs")."""
    units = training_subset(fold, fold["units"], subjects, seed)
    kept = subset_arrays(train, {image for image, _ in fold["train"] if fold["units"][image] in units})
    if len(kept["images"]) == 0:
        raise SegError(f"{prepared}: holds none of the images of the fold's training subjects {units[:3]}...; "
                       "run `dvc repro`, which prepares each fold from the split stage's folds file")
    epoch_images = len(train["images"]) if budget == "steps" else len(kept["images"])
    return kept, TrainingSubset(tuple(units), epoch_images)


def per_process_batch(model_cfg, processes, name):
    """models.<name>.batch_size images per step, split evenly over the training processes."""
    batch = model_cfg.batch_size // processes
    if batch * processes != model_cfg.batch_size or batch < 2:
        raise SegError(f"models.{name}.batch_size: {model_cfg.batch_size} images per step do not split into "
                       f"{processes} processes (runtime.processes) of at least 2 (batch norm); "
                       f"use a multiple of {2 * processes}")
    return batch


def make_loaders(data, model_cfg, train_cfg, meta, run, device):
    """Shuffled training batches (seeded) and ordered validation batches, of this process's share
    (run.world): a part of each training batch, and every world.size-th validation image. With
    data["epoch_images"] (a learning curve's subset) each epoch draws that many training images,
    every image as often as any other, give or take one."""
    train_arrays, val_arrays, name, world = data["train"], data["val"], run.name, run.world
    epoch_images = data.get("epoch_images", len(train_arrays["images"]))
    if len(val_arrays["images"]) == 0:
        raise SegError("data.val_fraction: the validation split is empty, and the best epoch is chosen on it; "
                       "set val_fraction above 0")
    if epoch_images < model_cfg.batch_size:
        raise SegError(f"models.{name}.batch_size: {model_cfg.batch_size} is larger than the "
                       f"{epoch_images} training images of an epoch; lower it")
    side, need = min(train_arrays["images"].shape[1:]) * model_cfg.input_scale, min_input_side(model_cfg)
    if side < need:
        raise SegError(f"models.{name}.depth: {model_cfg.depth} poolings need inputs of at least "
                       f"{need} px, but the model sees {side:g} px "
                       "(preprocess.base_size x input_scale); lower depth or raise base_size")
    batch, train_set = per_process_batch(model_cfg, world.size, name), PreparedDataset(train_arrays, meta)
    if epoch_images != len(train_set):
        train_set = Subset(train_set, [i % len(train_set) for i in range(epoch_images)])
    shuffle_gen = torch.Generator().manual_seed(train_cfg.seed)
    sampler = None if world.size == 1 else DistributedSampler(train_set, world.size, world.rank, shuffle=True,
                                                              seed=train_cfg.seed, drop_last=True)
    pin = device.type == "cuda"  # page-locked host batches: the copies to the GPU overlap its work
    # drop_last: a final batch of one image would crash DeepLabV3's batch norm after global pooling
    train_loader = DataLoader(train_set, batch_size=batch, shuffle=sampler is None, sampler=sampler,
                              drop_last=True, num_workers=train_cfg.workers, generator=shuffle_gen, pin_memory=pin)
    # no padding: unlike DistributedSampler, each validation image is seen by exactly one process
    val_loader = DataLoader(PreparedDataset(val_arrays, meta), batch_size=batch,
                            sampler=range(world.rank, len(val_arrays["images"]), world.size),
                            num_workers=train_cfg.workers, pin_memory=pin)
    return train_loader, val_loader


def _random_state(generators, device):
    """Every random generator's state, with torch's global ones (dropout draws from those)."""
    state = {name: g.get_state() for name, g in generators.items()}
    state["torch"] = torch.get_rng_state()
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_random_state(generators, device, state):
    for name, g in generators.items():
        g.set_state(state[name])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


@dataclasses.dataclass
class Progress:
    """What a run has done so far; saved with each epoch's state, so a resumed run continues it."""
    history: list = dataclasses.field(default_factory=list)   # one row per epoch (the epoch log)
    best: int = None                                          # the epoch of the best validation fg Dice
    best_dice: float = -1.0
    best_state: dict = None                                   # the model's state_dict at that epoch
    best_scores: dict = None
    seconds: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Training:
    """The objects of one training run, built by `setup`; `net` is the bare model (`model` wraps it
    under DDP)."""
    net: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: object
    scaler: object
    loaders: tuple        # (train, val)
    steps: tuple          # (training_step, validation_step)
    generators: dict      # the random generators a resumed run restores
    epochs: int


def setup(data, model_cfg, train_cfg, device, meta, run):
    """Loaders, model, optimiser, schedule and steps of a run, seeded in a fixed order."""
    world = run.world
    check_precision(device, model_cfg.precision, f"models.{run.name}")
    train_loader, val_loader = make_loaders(data, model_cfg, train_cfg, meta, run, device)
    torch.manual_seed(train_cfg.seed)
    net = build_model(model_cfg, meta.num_classes, train_cfg.bn_momentum)
    if model_cfg.encoder_file():
        load_encoder_weights(net, model_cfg.encoder_file())
    if model_cfg.weights:  # a whole model's weights go over an encoder's
        load_local_weights(net, model_cfg.weights)
    net = net.to(device, memory_format=torch.channels_last)
    if world.size > 1:
        torch.manual_seed(train_cfg.seed + world.rank)  # equal weights (DDP copies rank 0's), own dropout
    model = net if world.size == 1 else DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)
    opt_class = torch.optim.AdamW if train_cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_class(model.parameters(), lr=model_cfg.lr, weight_decay=train_cfg.weight_decay)
    epochs = model_cfg.epochs or train_cfg.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: cosine_factor(e, epochs, train_cfg.lrf))
    scaler = grad_scaler(device, model_cfg.precision)
    criterion = functools.partial(segmentation_loss, kind=train_cfg.loss)
    augment = Augment(train_cfg, train_cfg.seed + 1 + world.rank)
    steps = (training_step(model, criterion, optimizer, augment, model_cfg.precision, scaler),
             validation_step(net, criterion, model_cfg.precision))
    generators = {"shuffle": train_loader.generator, "augment": augment.generator}
    return Training(net, model, optimizer, schedule, scaler, (train_loader, val_loader), steps, generators, epochs)


def _resume(t, saved, run, device):
    """A stopped run's state restored into `t`; its progress."""
    t.net.load_state_dict(saved["model"])
    t.optimizer.load_state_dict(saved["optimizer"])
    t.schedule.load_state_dict(saved["schedule"])
    t.scaler.load_state_dict(saved["scaler"])
    _set_random_state(t.generators, device, saved["random"][run.world.rank])
    progress = Progress(**{f.name: saved[f.name] for f in dataclasses.fields(Progress)})
    if run.world.main:
        print(f"[{run.name}] resuming after epoch {len(progress.history)}/{t.epochs} (state in {run.state})", flush=True)
    return progress


def fit(data, model_cfg, train_cfg, device, meta, run):
    """Train `model_cfg` on `data` (prepared arrays of "train" and "val") on `device`; keep the epoch
    with the best validation foreground Dice. `run` (seglib.resume.TrainingRun) names the model,
    says which process this is, takes each epoch's log and state, and hands back a stopped run's
    state to continue from."""
    world, t = run.world, setup(data, model_cfg, train_cfg, device, meta, run)
    (train_loader, val_loader), (train, validate) = t.loaders, t.steps
    saved = run.resume()
    progress = Progress() if saved is None else _resume(t, saved, run, device)
    for epoch in range(len(progress.history), t.epochs):
        start, lr = time.perf_counter(), t.optimizer.param_groups[0]["lr"]
        tag = f"{run.name} {epoch + 1}/{t.epochs}"
        train_matrix, val_matrix = (ConfusionMatrix(meta.num_classes, device) for _ in range(2))
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch)  # a new seeded shuffle per epoch in every process
        t.model.train()
        train_loss = summed_over(world, train_matrix, *run_epoch(train_loader, train, train_matrix, f"train {tag}"))
        t.schedule.step()
        t.model.eval()
        world.share_buffers(t.net)  # every process validates the same weights and statistics
        val_loss = summed_over(world, val_matrix, *run_epoch(val_loader, validate, val_matrix, f"valid {tag}"))
        progress.seconds.append(time.perf_counter() - start)
        # images seen: with drop_last every step takes a whole batch from every process
        seen = (epoch + 1) * len(train_loader) * train_loader.batch_size * world.size
        row = {"epoch": epoch + 1, "images_seen": seen, "lr": lr, **_epoch_row("train", train_loss, train_matrix.numpy()),
               **_epoch_row("val", val_loss, val_matrix.numpy())}
        progress.history.append(row)
        dice = row["val_dice"] if not math.isnan(row["val_dice"]) else -1.0
        if dice > progress.best_dice:
            progress.best, progress.best_dice = epoch + 1, dice
            progress.best_state, progress.best_scores = copy.deepcopy(t.net.state_dict()), scores(val_matrix.numpy())
        if world.main:
            tqdm.write(f"[{run.name}] epoch {epoch + 1}/{t.epochs} lr {lr:.2e} | train loss {train_loss:.4f} "
                       f"dice {row['train_dice']:.4f} | val loss {val_loss:.4f} iou {row['val_iou']:.4f} "
                       f"dice {row['val_dice']:.4f}{' *' if progress.best == epoch + 1 else ''}")
            sys.stdout.flush()  # one line per epoch, visible as it happens in a piped log
        random = world.gather(_random_state(t.generators, device))  # every process's, for an exact resume
        run.epoch_done(progress.history, {
            "model": t.net.state_dict(), "optimizer": t.optimizer.state_dict(), "schedule": t.schedule.state_dict(),
            "scaler": t.scaler.state_dict(), "random": random, **vars(progress)})
    t.net.load_state_dict(progress.best_state)
    return FitResult(progress.history, progress.best, progress.best_scores, t.net.eval(),
                     count_parameters(t.net), progress.seconds)


def choose_postprocessing(result, data, model_cfg, meta, device):
    """The trained model's post-processing rules, chosen on the validation images at the prepared size
    (seglib.postprocess), and the report of every candidate's validation Dice."""
    val = data["val"]
    predictor = Predictor(result.model, meta, device, model_cfg.precision, model_cfg.batch_size)
    preds = predictor.classes(val["images"], [meta.base_size] * len(val["images"]))
    return postprocess.choose(preds, val["masks"], data["train"]["masks"], meta.num_classes)
