"""Reading images and masks, and writing every output atomically. No torch here.

Every writer goes through `atomic_path`: the file is written next to its final
name and renamed into place, so an interrupted stage never leaves a
half-written output behind.
"""
import contextlib
import csv
import glob
import json
import math
import os
import secrets
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")  # read by seglib.volume
DEFAULT_MAX_PIXELS = 4096 * 4096  # preprocess.max_pixels: medical slices are far smaller


class UnreadableFile(Exception):
    """A file that cannot be decoded; carries the reason for the dataset check."""


TEMP_SUFFIX = ".seglib-tmp"  # .gitignore and .dvcignore list it: a leftover is never part of an output


def _temp_names(path):
    """Hidden temporary names beside `path`, created by this module only."""
    return path.parent.glob(f".{glob.escape(path.name)}.*{TEMP_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only on success.

    The temporary file is created with mode 0666 minus the umask, as `open`
    would create the final file (mkstemp's 0600 would outlive the rename).
    Leftovers of an earlier killed write of the same file are removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        os.replace(tmp, path)
        for stale in _temp_names(path):
            stale.unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _clean(value):
    """JSON-safe copy: NaN/inf become null (DVC's JSON would print NaN), floats rounded."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if not math.isfinite(value) else round(value, 6)
    return value


def write_json(path, data):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_clean(data), indent=2) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())


def write_csv(path, rows, fieldnames=None):
    """Write a list of dicts as CSV; None and NaN become empty cells."""
    rows = [_clean(r) for r in rows]
    fieldnames = fieldnames or (list(rows[0]) if rows else [])
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _cell(text):
    if text == "":
        return float("nan")
    try:
        return float(text)
    except ValueError:
        return text


def read_csv(path):
    """Rows as dicts; numeric cells become floats and empty cells NaN (the inverse of write_csv)."""
    with open(path, newline="") as fh:
        return [{k: _cell(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_figure(fig, path, dpi=100):
    """Save a matplotlib figure atomically, without timestamps in the file."""
    import matplotlib.pyplot as plt  # pyplot keeps every figure it made until it is closed
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png",
                        metadata={"Software": None})
    finally:
        plt.close(fig)


def write_npz(path, **arrays):
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def read_npz(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def is_volume(name):
    return str(name).lower().endswith(VOLUME_SUFFIXES)


def file_stem(name):
    """The name without its suffix, `.nii.gz` counted as one: Case01.nii.gz -> Case01."""
    name = Path(name).name
    suffix = next((s for s in VOLUME_SUFFIXES if name.lower().endswith(s)), Path(name).suffix)
    return name[:len(name) - len(suffix)] if suffix else name


def _readable_suffix(path):
    return path.suffix.lower() in IMAGE_SUFFIXES or is_volume(path.name)


def list_images(folder):
    """Image and volume files in `folder` (by suffix), sorted by name so order never depends on the file system.

    Hidden files (a leading dot: macOS's AppleDouble `._x.png`, editors' backups) are not images.
    """
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and _readable_suffix(p) and not p.name.startswith("."))


def hidden_images(folder):
    """Hidden files with an image suffix that `list_images` leaves out."""
    return sorted(p for p in Path(folder).iterdir() if p.name.startswith(".") and _readable_suffix(p))


# The size limit is checked here from the header, before decoding; Pillow's own
# bomb check (a warning at 89 M pixels) would only duplicate it with a traceback.
Image.MAX_IMAGE_PIXELS = None


def _open(path, max_pixels):
    try:
        im = Image.open(path)
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableFile(f"cannot decode image ({exc})") from None
    width, height = im.size
    if width * height > max_pixels:
        im.close()
        raise UnreadableFile(f"{width}x{height} = {width * height:,} pixels, more than preprocess.max_pixels "
                             f"({max_pixels:,}); read from the header, nothing decoded: downscale the image, "
                             "or raise max_pixels if slices this large are real")
    pages = getattr(im, "n_frames", 1)
    if pages > 1:
        im.close()
        raise UnreadableFile(f"holds {pages} pages (a stack or a volume?); only the first would be read: "
                             "save one slice per file")
    try:
        im.load()
        return im
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableFile(f"cannot decode image ({exc})") from None


def read_image(path, max_pixels=DEFAULT_MAX_PIXELS):
    """An image as a 2-D float32 array of its raw values, and its bit depth (8 or 16).

    RGB images are converted to one gray channel (ITU-R 601 luma), as spine MRI
    and CT slices saved as RGB carry the same value in every channel.
    """
    im = _open(path, max_pixels)
    orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    if orientation != 1:
        raise UnreadableFile(f"has EXIF orientation {orientation}: viewers show it turned, but its pixels are "
                             "stored unturned, so they would not line up with a mask drawn on what you see; save it "
                             "with the turn applied (PIL.ImageOps.exif_transpose) and without the tag")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(im, dtype=np.float32), 16
    if im.mode == "F":
        pixels = np.asarray(im, dtype=np.float32)
        bad = int(pixels.size - np.isfinite(pixels).sum())
        if bad:  # a cast would turn them into garbage, and the normalisation with them
            raise UnreadableFile(f"{bad} of its {pixels.size} pixels are not finite (NaN or inf); replace them "
                                 "(e.g. with the background value) and save it again")
        return pixels, 16
    if im.mode not in ("L", "RGB", "RGBA", "LA", "P", "1"):
        raise UnreadableFile(f"unsupported image mode {im.mode!r}; save it as 8/16-bit gray or RGB")
    return np.asarray(im.convert("L"), dtype=np.float32), 8


EXIF_ORIENTATION = 0x0112
MASK_KINDS = {"1": "1-bit", "L": "8-bit", "I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit", "I": "32-bit"}


def read_mask(path, max_pixels=DEFAULT_MAX_PIXELS):
    """(2-D integer array of the mask's gray values, its kind: '8-bit', '16-bit', ...).

    Only single-channel masks are accepted. The kind lets the dataset check
    catch one mask saved at another bit depth, whose 65535 would become a class.
    """
    im = _open(path, max_pixels)
    if im.mode == "1":
        return np.asarray(im.convert("L"), dtype=np.int64), MASK_KINDS["1"]
    if im.mode in MASK_KINDS:
        values = np.asarray(im, dtype=np.int64)
        if values.size and (values.max() > 65535 or values.min() < 0):
            raise UnreadableFile(f"mask holds gray value {int(values.max() if values.max() > 65535 else values.min())}, "
                                 "outside 0-65535: masks hold one small gray value per class; save it as 8- or 16-bit")
        return values, MASK_KINDS[im.mode]
    if im.mode == "P":
        raise UnreadableFile(
            "mask is a palette image (mode 'P'): its pixels are palette indices, which are the classes; "
            "save the indices as gray values, e.g. Image.fromarray(np.asarray(Image.open(p))).save(p) "
            "(convert('L') would turn the palette colours into brightness, not class indices)")
    raise UnreadableFile(
        f"mask has mode {im.mode!r} ({len(im.getbands())} channels); masks must be "
        "single-channel gray images with one gray value per class: save the class image as 8-bit gray")


def _png_chunk(kind, payload):
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def png_bytes_stored(gray):
    """An 8-bit gray PNG whose pixel data uses stored (uncompressed) deflate blocks.

    zlib builds (and zlib-ng's CPU-specific paths, bundled with Pillow) compress
    differently, so compressed PNGs can differ byte for byte between machines.
    Stored blocks have exactly one encoding, which keeps data.dvc's hash stable.
    """
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    height, width = gray.shape
    raw = b"".join(b"\x00" + gray[row].tobytes() for row in range(height))
    blocks, step = [], 65535
    for start in range(0, len(raw), step):
        block = raw[start:start + step]
        final = 1 if start + step >= len(raw) else 0
        blocks.append(struct.pack("<BHH", final, len(block), 0xFFFF ^ len(block)) + block)
    stream = b"\x78\x01" + b"".join(blocks) + struct.pack(">I", zlib.adler32(raw) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", stream) + _png_chunk(b"IEND", b""))


def write_png(path, array):
    """Write an 8-bit (uint8) or 16-bit (uint16) gray PNG atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(array)).save(tmp, format="PNG")
