"""The built-in dataset: synthetic sagittal spine MRI slices with vertebral-body masks.

Each subject has a curved column of 5-8 vertebral bodies separated by discs,
the spinal canal and posterior elements behind them, soft tissue, intensity
inhomogeneity and Rician-like noise; a few sagittal slices per subject move
off the midline. Masks follow the original project's format: 8-bit PNG,
0 = background, 255 = vertebral body.

Byte-for-byte reproducibility is the point (data.dvc pins the hash): only
IEEE-exact operations are used (+ - * / sqrt, comparisons; no sin, exp, pow
or reductions, whose SIMD variants round differently across CPUs), random
numbers come from PCG64's raw doubles, and PNGs are written uncompressed.
"""
from pathlib import Path

import numpy as np

from seglib.errors import SegError
from seglib.io import png_bytes_stored, write_bytes

SIZES = (224, 240, 256, 272)


def _blur3(a):
    """3x3 box blur from shifted adds (edge pixels repeated)."""
    p = np.pad(a, 1, mode="edge")
    rows = p[:-2] + p[1:-1] + p[2:]
    return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) / 9.0


def _smooth_noise(rng, shape, passes):
    out = rng.random(shape)
    for _ in range(passes):
        out = _blur3(out)
    return out


def _superellipse(a, b, half_a, half_b):
    """Inside test for a rounded rectangle |a/ha|^4 + |b/hb|^4 <= 1, by multiplication only."""
    ra, rb = a / half_a, b / half_b
    ra, rb = ra * ra, rb * rb
    return ra * ra + rb * rb <= 1.0


def _subject(rng):
    """Anatomy shared by all slices of one subject."""
    u = rng.random(16)
    return {
        "count": 5 + int(u[0] * 3),
        "curve": (u[1] - 0.5) * 0.2, "curve2": (u[2] - 0.5) * 0.7, "curve3": (u[3] - 0.5) * 0.6,
        "x0": 0.42 + u[4] * 0.16,
        "height_frac": 0.66 + u[5] * 0.14,
        "aspect": 1.35 + u[6] * 0.4,
        "body": 0.42 + u[7] * 0.30, "disc": 0.25 + u[8] * 0.65, "tissue": 0.25 + u[9] * 0.2,
        "csf": 0.55 + u[10] * 0.4, "noise": 0.03 + u[11] * 0.06,
        "bias": (u[12] - 0.5) * 0.8, "bias2": (u[13] - 0.5) * 0.8,
        "top": 0.04 + u[14] * 0.08,
    }


def _render(rng, anatomy, offset, height, width):
    """One slice at lateral `offset` in [-1, 1]: (image uint8, mask uint8)."""
    yy = (np.arange(height, dtype=np.float64)[:, None] + 0.5) / height + np.zeros((1, width))
    xx = (np.arange(width, dtype=np.float64)[None, :] + 0.5) / width + np.zeros((height, 1))
    scale_x = width / height  # work in units of image height on both axes
    t = yy - 0.5
    centre = anatomy["x0"] + anatomy["curve"] * t + anatomy["curve2"] * t * t + anatomy["curve3"] * t * t * t
    slope = (anatomy["curve"] + 2 * anatomy["curve2"] * t + 3 * anatomy["curve3"] * t * t) / scale_x
    norm = np.sqrt(1.0 + slope * slope)
    across = (xx - centre) * scale_x / norm  # signed distance across the column (+ = posterior)

    image = anatomy["tissue"] + 0.12 * (_smooth_noise(rng, (height, width), 6) - 0.5)
    body_outline = _superellipse(xx - 0.5, yy - 0.5, 0.49, 0.62)
    image = np.where(body_outline, image, 0.03)

    n = anatomy["count"]
    pitch = (1.0 - 2 * anatomy["top"]) / n
    lateral = 1.0 - 0.2 * offset * offset
    mask = np.zeros((height, width), dtype=bool)
    body_width = pitch * anatomy["height_frac"] * anatomy["aspect"] * lateral
    marrow = _smooth_noise(rng, (height, width), 2)
    for k in range(n + 1):
        jitter = rng.random(4)
        y_k = anatomy["top"] + pitch * (k + 0.5) + (jitter[0] - 0.5) * 0.1 * pitch
        t_k = y_k - 0.5
        c_k = anatomy["x0"] + anatomy["curve"] * t_k + anatomy["curve2"] * t_k * t_k + anatomy["curve3"] * t_k * t_k * t_k
        s_k = (anatomy["curve"] + 2 * anatomy["curve2"] * t_k + 3 * anatomy["curve3"] * t_k * t_k) / scale_x
        n_k = np.sqrt(1.0 + s_k * s_k)
        dx, dy = (xx - c_k) * scale_x, yy - y_k
        along = (dy + s_k * dx) / n_k  # coordinates in the vertebra's own frame
        perp = (dx - s_k * dy) / n_k
        half_h = pitch * anatomy["height_frac"] * (0.92 + 0.16 * jitter[1]) / 2
        half_w = body_width * (0.9 + 0.2 * jitter[2]) / 2
        body = _superellipse(along, perp, half_h, half_w)
        if k == n:  # a partial vertebra (sacrum) with a different signal: not labelled
            image = np.where(body, anatomy["body"] * 0.7 + 0.1 * marrow, image)
            continue
        disc = _superellipse(along - pitch / 2, perp, pitch * (1 - anatomy["height_frac"]) * 0.7, half_w * 0.95)
        image = np.where(disc & ~body, anatomy["disc"], image)
        bright = anatomy["body"] + 0.18 * (marrow - 0.5) + 0.08 * (jitter[3] - 0.5)
        image = np.where(body, bright, image)
        mask |= body
        # posterior elements: bone of similar signal behind the canal, a hard negative
        spine_proc = _superellipse(along + 0.2 * half_h, perp - half_w * 2.1, half_h * 0.7, half_w * 0.45)
        image = np.where(spine_proc & (abs(offset) < 0.8), anatomy["body"] * 0.9 + 0.1 * marrow, image)

    canal = (across > body_width / 2 + 0.01) & (across < body_width / 2 + 0.05) & (yy > anatomy["top"] * 0.5)
    canal_signal = anatomy["csf"] * (1.0 - 0.8 * offset * offset)
    image = np.where(canal & ~mask, canal_signal + 0.05 * (marrow - 0.5), image)

    image = _blur3(image)
    bias = 1.0 + anatomy["bias"] * (xx - 0.5) + anatomy["bias2"] * (yy - 0.5) + 0.6 * (xx - 0.5) * (yy - 0.5)
    image = image * bias
    sigma = anatomy["noise"] * np.sqrt(3.0)
    noise = [(rng.random((height, width)) + rng.random((height, width)) - 1.0) * sigma for _ in range(2)]
    image = np.sqrt((image + noise[0]) * (image + noise[0]) + noise[1] * noise[1])  # Rician magnitude
    image = np.floor(np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return image, np.where(mask, 255, 0).astype(np.uint8)


# storage orders the volumes cycle through (ITK direction matrices): LPS, RAS as NIfTI tools write it,
# and one with the axes permuted, so a pipeline run on them exercises seglib.volume's reorientation
STORAGE_ORDERS = ((1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, 1), (0, 0, 1, -1, 0, 0, 0, -1, 0))
PLANE_MM, PIXEL_MM = 3.0, 1.0   # sagittal MRI: thick planes, fine in-plane pixels


def generate(out_dir, subjects=40, slices=6, seed=0, volumes=False):
    """Write `images/CaseNNN_SliceKK.png` and `masks/CaseNNN_Labels_sliceKK.png` under `out_dir`; with
    `volumes`, one NIfTI volume per subject instead, `images/CaseNNN.nii.gz` and `masks/CaseNNN.nii.gz`
    (labels 0 and 1; `slices` sagittal planes of 3 mm, 1 mm pixels, in the STORAGE_ORDERS in turn).

    Refuses a folder that already holds images or masks: they may be a user's own data.
    """
    for name, value, top in (("--subjects", subjects, 100_000), ("--slices", slices, 1_000)):
        if not 1 <= value <= top:
            raise SegError(f"{name}: must be 1 to {top}, got {value}")
    if not 0 <= seed < 2 ** 32:
        raise SegError(f"--seed: must be 0 to {2 ** 32 - 1}, got {seed}")
    out_dir = Path(out_dir)
    for folder in ("images", "masks"):
        if (out_dir / folder).is_dir() and any((out_dir / folder).iterdir()):
            raise SegError(f"{out_dir / folder}: not empty; synth writes only into new or empty folders, so "
                           "it never overwrites data (delete the folder first if it is an old synthetic set)")
    rng = np.random.Generator(np.random.PCG64(seed))
    for case in range(1, subjects + 1):
        anatomy = _subject(rng)
        size = rng.integers(0, len(SIZES), size=2)
        height, width = SIZES[size[0]], SIZES[size[1]]
        planes = [_render(rng, anatomy, -1.0 + 2.0 * k / max(slices - 1, 1), height, width) for k in range(slices)]
        if volumes:
            from seglib.volume import store
            spacing, direction = (PLANE_MM, PIXEL_MM, PIXEL_MM), STORAGE_ORDERS[(case - 1) % len(STORAGE_ORDERS)]
            store(out_dir / "images" / f"Case{case:03d}.nii.gz", np.stack([p[0] for p in planes]), spacing, direction)
            store(out_dir / "masks" / f"Case{case:03d}.nii.gz", np.stack([p[1] // 255 for p in planes]), spacing,
                  direction)
            continue
        for k, (image, mask) in enumerate(planes):
            stem = f"Case{case:03d}_{{}}{k + 1:02d}.png"
            for folder, name, array in (("images", stem.format("Slice"), image),
                                        ("masks", stem.format("Labels_slice"), mask)):
                write_bytes(out_dir / folder / name, png_bytes_stored(array))
