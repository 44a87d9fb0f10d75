"""Training: train_one_epoch, evaluate and fit, read top to bottom. Writes no files.

Train metrics come from the training forward pass itself (train-mode
predictions, accumulated in one confusion matrix), not from a second pass.
"""
import copy
import dataclasses
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from seglib.errors import SegError
from seglib.metrics import confusion, scores
from seglib.inference import resolve_device, use_threads
from seglib.models import build_model, count_parameters, min_input_side
from seglib.transforms import normalise

EPOCH_COLUMNS = ("loss", "accuracy", "iou", "dice", "precision", "recall", "f1")


class PreparedDataset(Dataset):
    """Prepared uint8 arrays -> (normalised float image (1, H, W), class-id mask (H, W))."""

    def __init__(self, arrays, mean, std):
        self.images = torch.from_numpy(arrays["images"])
        self.masks = torch.from_numpy(arrays["masks"]).long()
        self.mean, self.std = mean, std

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return normalise(self.images[i], self.mean, self.std).unsqueeze(0), self.masks[i]


def cosine_factor(epoch, epochs, lrf):
    """The original project's schedule: lr * ((1 + cos(pi e / E)) / 2 * (1 - lrf) + lrf)."""
    return (1 + math.cos(math.pi * epoch / epochs)) / 2 * (1 - lrf) + lrf


def segmentation_loss(logits, target, kind):
    """Cross-entropy, plus soft Dice over the foreground classes for kind='ce_dice'."""
    loss = F.cross_entropy(logits, target)
    if kind == "ce_dice":
        probs = logits.softmax(1)
        onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
        inter = (probs * onehot).sum((0, 2, 3))
        total = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
        loss = loss + 1 - ((2 * inter + 1) / (total + 1))[1:].mean()
    return loss


def flip_batch(images, masks, hflip, vflip, generator):
    """Flip each sample horizontally / vertically with its own probability (image and mask together)."""
    for p, dim in ((hflip, -1), (vflip, -2)):
        if p > 0:
            chosen = torch.rand(len(images), generator=generator) < p
            images[chosen] = images[chosen].flip(dim)
            masks[chosen] = masks[chosen].flip(dim)
    return images, masks


def jitter_batch(images, masks, cfg, generator):
    """Random per-image contrast/brightness, scale and rotation (image bilinear, mask nearest).

    Slices of new subjects differ in contrast, size and tilt; flips alone teach
    none of that. All amounts are 0 (off) by default.
    """
    n = len(images)
    if cfg.intensity_jitter > 0:
        u = torch.rand(2, n, 1, 1, 1, generator=generator) * 2 - 1
        images = images * (1 + cfg.intensity_jitter * u[0]) + cfg.intensity_jitter * u[1]
    if cfg.scale_jitter > 0 or cfg.rotate_degrees > 0:
        u = torch.rand(2, n, generator=generator) * 2 - 1
        scale = 1 + cfg.scale_jitter * u[0]
        angle = torch.deg2rad(cfg.rotate_degrees * u[1])
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1), torch.stack([sin, cos, torch.zeros(n)], 1)], 1)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        masks = F.grid_sample(masks[:, None].float(), grid, mode="nearest", align_corners=False)[:, 0].long()
    return images, masks


def autocast(device, precision):
    """bf16 autocast (convolutions in bfloat16, losses and reductions in float32), or plain fp32.

    On CPUs with AMX/AVX-512 bf16 and on recent GPUs this trains UNet about 2x
    faster (bench/precision.py); the weights themselves stay float32.
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def to_device(images, masks, device):
    # channels_last: oneDNN and cuDNN convolutions run faster in NHWC
    return images.to(device, memory_format=torch.channels_last), masks.to(device)


def _bar_postfix(loss, matrix):
    s = scores(matrix)
    return {"loss": f"{loss:.3f}", "iou": f"{s['fg_iou']:.3f}", "dice": f"{s['fg_dice']:.3f}"}


def train_step(model, images, masks, optimizer, loss_kind, precision):
    """One optimisation step on a batch already on the device; returns (logits, loss)."""
    with autocast(images.device, precision):
        logits = model(images)
        loss = segmentation_loss(logits, masks, loss_kind)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return logits, loss


def train_one_epoch(model, loader, optimizer, device, num_classes, cfg, precision, generator, desc):
    model.train()
    matrix, total, seen = np.zeros((num_classes, num_classes), np.int64), 0.0, 0
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None)
    for images, masks in bar:
        images, masks = flip_batch(images, masks, cfg.hflip, cfg.vflip, generator)
        images, masks = jitter_batch(images, masks, cfg, generator)
        images, masks = to_device(images, masks, device)
        logits, loss = train_step(model, images, masks, optimizer, cfg.loss, precision)
        total, seen = total + loss.item() * len(images), seen + len(images)
        matrix += confusion(masks.cpu().numpy(), logits.argmax(1).cpu().numpy(), num_classes)
        bar.set_postfix(_bar_postfix(total / seen, matrix))
    return total / seen, matrix


@torch.no_grad()
def evaluate(model, loader, device, num_classes, loss_kind, precision, desc):
    model.eval()
    matrix, total, seen = np.zeros((num_classes, num_classes), np.int64), 0.0, 0
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None)
    for images, masks in bar:
        images, masks = to_device(images, masks, device)
        with autocast(device, precision):
            logits = model(images)
            loss = segmentation_loss(logits, masks, loss_kind)
        total += loss.item() * len(images)
        seen += len(images)
        matrix += confusion(masks.cpu().numpy(), logits.argmax(1).cpu().numpy(), num_classes)
        bar.set_postfix(_bar_postfix(total / seen, matrix))
    return total / seen, matrix


def _epoch_row(prefix, loss, matrix):
    s = scores(matrix)
    row = {f"{prefix}_loss": loss, f"{prefix}_accuracy": s["accuracy"]}
    row.update({f"{prefix}_{k}": s[f"fg_{k}"] for k in EPOCH_COLUMNS[2:]})
    return row


@dataclasses.dataclass
class FitResult:
    history: list        # one dict per epoch: epoch, lr, train_*, val_*
    best_epoch: int
    best_scores: dict    # scores() of the validation confusion matrix at the best epoch
    model: torch.nn.Module
    parameters: int
    seconds_per_epoch: list


def make_loaders(train_arrays, val_arrays, model_cfg, train_cfg, stats, name):
    """Shuffled training batches (seeded) and ordered validation batches."""
    if len(val_arrays["images"]) == 0:
        raise SegError("data.val_fraction: the validation split is empty, and the best epoch is chosen on it; "
                       "set val_fraction above 0")
    if len(train_arrays["images"]) < model_cfg.batch_size:
        raise SegError(f"models.{name}.batch_size: {model_cfg.batch_size} is larger than the "
                       f"{len(train_arrays['images'])} training images; lower it")
    side, need = min(train_arrays["images"].shape[1:]) * model_cfg.input_scale, min_input_side(model_cfg)
    if side < need:
        raise SegError(f"models.{name}.depth: {model_cfg.depth} poolings need inputs of at least "
                       f"{need} px, but the model sees {side:g} px "
                       "(preprocess.base_size x input_scale); lower depth or raise base_size")
    shuffle_gen = torch.Generator().manual_seed(train_cfg.seed)
    # drop_last: a final batch of one image would crash DeepLabV3's batch norm after global pooling
    train_loader = DataLoader(PreparedDataset(train_arrays, **stats), batch_size=model_cfg.batch_size,
                              shuffle=True, drop_last=True, num_workers=train_cfg.workers, generator=shuffle_gen)
    val_loader = DataLoader(PreparedDataset(val_arrays, **stats), batch_size=model_cfg.batch_size,
                            num_workers=train_cfg.workers)
    return train_loader, val_loader


def fit(train_arrays, val_arrays, model_cfg, train_cfg, meta, name):
    """Train `model_cfg` on the prepared arrays; keep the epoch with the best validation foreground Dice."""
    num_classes, stats = meta.num_classes, {"mean": meta.mean, "std": meta.std}
    train_loader, val_loader = make_loaders(train_arrays, val_arrays, model_cfg, train_cfg, stats, name)
    use_threads(train_cfg.threads)
    torch.manual_seed(train_cfg.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = resolve_device(train_cfg.device)
    epochs = model_cfg.epochs or train_cfg.epochs
    model = build_model(model_cfg, num_classes, train_cfg.bn_momentum).to(device, memory_format=torch.channels_last)
    opt_class = torch.optim.AdamW if train_cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_class(model.parameters(), lr=model_cfg.lr, weight_decay=train_cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: cosine_factor(e, epochs, train_cfg.lrf))
    flip_gen = torch.Generator().manual_seed(train_cfg.seed + 1)
    history, best, best_dice, best_state, seconds = [], None, -1.0, None, []
    for epoch in range(epochs):
        start, lr = time.perf_counter(), optimizer.param_groups[0]["lr"]
        tag = f"{name} {epoch + 1}/{epochs}"
        train_loss, train_matrix = train_one_epoch(model, train_loader, optimizer, device, num_classes,
                                                   train_cfg, model_cfg.precision, flip_gen, f"train {tag}")
        schedule.step()
        val_loss, val_matrix = evaluate(model, val_loader, device, num_classes, train_cfg.loss,
                                       model_cfg.precision, f"valid {tag}")
        seconds.append(time.perf_counter() - start)
        row = {"epoch": epoch + 1, "lr": lr, **_epoch_row("train", train_loss, train_matrix),
               **_epoch_row("val", val_loss, val_matrix)}
        history.append(row)
        dice = row["val_dice"] if not math.isnan(row["val_dice"]) else -1.0
        if dice > best_dice:
            best, best_dice, best_state = epoch + 1, dice, copy.deepcopy(model.state_dict())
            best_scores = scores(val_matrix)
        tqdm.write(f"[{name}] epoch {epoch + 1}/{epochs} lr {lr:.2e} | train loss {train_loss:.4f} "
                   f"dice {row['train_dice']:.4f} | val loss {val_loss:.4f} iou {row['val_iou']:.4f} "
                   f"dice {row['val_dice']:.4f}{' *' if best == epoch + 1 else ''}")
    model.load_state_dict(best_state)
    return FitResult(history, best, best_scores, model.eval(), count_parameters(model), seconds)
