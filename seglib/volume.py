"""Volumes in and out: NIfTI, MHA/MHD and NRRD read with SimpleITK, one anatomical orientation to slice
them in, and label volumes written back in the input's own grid and header.

SimpleITK (ITK's reader) rather than nibabel: one maintained library opens every format spine archives
use (NIfTI for VerSe and MyoSegmenTUM, MHA for SPIDER, NRRD, DICOM series) and reports every header in
one physical frame (LPS: x towards the patient's left, y posterior, z superior), so orientation is
read the same way whatever the format or storage order.

Every volume is turned into a canonical array (plane, row, column) before it is sliced: for sagittal
slicing the planes run right to left, rows superior to inferior and columns anterior to posterior, so a
model trained on RAS files sees LPS files the same way. `Orientation` undoes it exactly.
"""
import dataclasses
import gzip
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np

from seglib.errors import SegError
from seglib.io import TEMP_SUFFIX, UnreadableFile, is_volume, list_images

# (LPS axis, sign) of the canonical (plane, row, column) axes. In-plane: superior up, anterior left on
# sagittal slices; coronal and axial in the radiological convention (the patient's right on the left).
LAYOUTS = {
    "sagittal": ((0, 1), (2, -1), (1, 1)),
    "coronal": ((1, 1), (2, -1), (0, 1)),
    "axial": ((2, -1), (1, 1), (0, 1)),
}
LPS_NAMES = ("left-right", "anterior-posterior", "inferior-superior")
# an image and its mask share a grid when their headers agree this closely (float32 NIfTI headers
# written by different tools differ in the last digits)
SPACING_TOLERANCE = 1e-3    # relative
DIRECTION_TOLERANCE = 1e-3  # cosine components
ORIGIN_TOLERANCE = 1e-2     # fraction of the smallest voxel side


VOLUME_SPACING = ("evaluate.pixel_spacing / subject_spacing: the data are volumes, whose headers give the spacing "
                  "in mm; set pixel_spacing: null and subject_spacing: {}")


def check_spacing_source(eval_cfg, image_dir):
    """Spacing settings are for 2-D images: volumes carry theirs in the header (a listing, no file read)."""
    if eval_cfg.in_mm and Path(image_dir).is_dir() and any(is_volume(p) for p in list_images(image_dir)):
        raise SegError(VOLUME_SPACING)


@dataclasses.dataclass(frozen=True)
class Orientation:
    """How a stored array (SimpleITK's z, y, x order) becomes the canonical one: a transpose, then flips."""
    order: tuple       # canonical axis t is stored axis order[t]
    flips: tuple       # canonical axes reversed after the transpose

    def to_canonical(self, stored):
        return np.flip(np.transpose(stored, self.order), self.flips) if self.flips else np.transpose(stored, self.order)

    def to_stored(self, canonical):
        flipped = np.flip(canonical, self.flips) if self.flips else canonical
        return np.ascontiguousarray(np.transpose(flipped, np.argsort(self.order)))


def orientation_of(direction, slice_axis):
    """The Orientation that brings an array with this direction matrix (3 x 3, row-major, ITK's: column
    c is index axis c in LPS) into LAYOUTS[slice_axis]. Oblique axes snap to the nearest anatomical one."""
    direction = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    # stored numpy axis a is ITK index axis 2 - a
    lps_axis = [int(np.argmax(np.abs(direction[:, 2 - a]))) for a in range(3)]
    if sorted(lps_axis) != [0, 1, 2]:
        raise UnreadableFile(f"its axes are too oblique to tell which is {' and which is '.join(LPS_NAMES)} "
                             f"(direction {np.round(direction, 3).tolist()}); resample it to an axis-aligned grid")
    sign = [int(np.sign(direction[lps_axis[a], 2 - a])) for a in range(3)]
    order = tuple(lps_axis.index(axis) for axis, _ in LAYOUTS[slice_axis])
    flips = tuple(t for t, (_, want) in enumerate(LAYOUTS[slice_axis]) if sign[order[t]] != want)
    return Orientation(order, flips)


@dataclasses.dataclass(frozen=True)
class Header:
    """The grid of a stored volume: what a label volume written for it must carry."""
    size: tuple          # ITK order (x, y, z)
    spacing: tuple       # mm, ITK order
    origin: tuple
    direction: tuple     # 9 numbers, row-major

    def matches(self, other):
        """'' when `other` is the same grid, else what differs."""
        if self.size != other.size:
            return f"size {list(other.size)} differs from {list(self.size)}"
        spacing, other_spacing = np.asarray(self.spacing), np.asarray(other.spacing)
        if np.any(np.abs(spacing - other_spacing) > SPACING_TOLERANCE * spacing):
            return f"voxel spacing {list(other.spacing)} differs from {list(self.spacing)}"
        if np.any(np.abs(np.subtract(self.direction, other.direction)) > DIRECTION_TOLERANCE):
            return f"orientation (direction {list(other.direction)}) differs from {list(self.direction)}"
        if np.any(np.abs(np.subtract(self.origin, other.origin)) > ORIGIN_TOLERANCE * spacing.min()):
            return f"origin {list(other.origin)} differs from {list(self.origin)}"
        return ""


@dataclasses.dataclass(frozen=True)
class Volume:
    """A volume in canonical orientation, with what is needed to put labels back in its own grid."""
    voxels: np.ndarray   # canonical (plane, row, column)
    spacing: tuple       # mm along the canonical axes
    header: Header
    orientation: Orientation


def _reader(path, max_voxels):
    """A SimpleITK reader whose header was read and checked; no voxel read yet."""
    import SimpleITK as sitk
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise UnreadableFile(f"cannot read the volume header: the file is damaged, truncated or not a volume "
                             f"({_first_line(exc)})") from None
    size = reader.GetSize()
    if len(size) == 4 and size[3] == 1:
        size = size[:3]  # a 3D volume stored with one time point
    if len(size) != 3:
        raise UnreadableFile(f"is {len(size)}-D ({' x '.join(map(str, size))}); volumes must be 3-D: save 2-D slices "
                             "as PNG/TIFF, and one 3-D volume per file (a time series or several channels: split it)")
    if reader.GetNumberOfComponents() != 1:
        raise UnreadableFile(f"holds {reader.GetNumberOfComponents()} values per voxel (colour or vector); "
                             "save one gray value per voxel")
    voxels = int(np.prod(size))
    if voxels > max_voxels:
        raise UnreadableFile(f"{' x '.join(map(str, size))} = {voxels:,} voxels, more than volume.max_voxels "
                             f"({max_voxels:,}); read from the header, nothing decoded: crop or downsample it, or "
                             "raise max_voxels if volumes this large are real")
    if reader.HasMetaDataKey("vox_offset"):  # NIfTI
        broken = _nifti_complete(path, reader)
        if broken:
            raise UnreadableFile(f"cannot read the voxels: the file is damaged or truncated ({broken})")
    return reader


def _nifti_complete(path, reader):
    """'' when a NIfTI file holds every voxel its header announces, else why not. ITK's NIfTI reader fills a
    truncated file's missing voxels with zeros without a word, so the length is checked here (for .nii.gz by
    decompressing the stream, which also checks its CRC)."""
    size = [int(reader.GetMetaData(f"dim[{i}]")) for i in range(1, int(reader.GetMetaData("dim[0]")) + 1)]
    expected = int(float(reader.GetMetaData("vox_offset"))) + int(np.prod(size)) * int(reader.GetMetaData("bitpix")) // 8
    if str(path).lower().endswith(".gz"):
        found = 0
        try:
            with gzip.open(path, "rb") as stream:
                while chunk := stream.read(1 << 24):
                    found += len(chunk)
        except (EOFError, OSError, zlib.error) as exc:
            return f"its compressed stream is broken ({exc})"
    else:
        found = os.path.getsize(path)
    return "" if found >= expected else f"holds {found:,} bytes of the {expected:,} its header announces"


def _first_line(exc):
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return next((line for line in reversed(lines) if "rror" in line or "annot" in line), lines[-1] if lines else "")


def read_volume(path, slice_axis, max_voxels):
    """A Volume read from `path`, in LAYOUTS[slice_axis]; any problem is an UnreadableFile saying what."""
    import SimpleITK as sitk
    reader = _reader(path, max_voxels)
    try:
        image = reader.Execute()
    except RuntimeError as exc:  # a truncated .nii.gz fails here, after a sound header
        raise UnreadableFile(f"cannot read the voxels: the file is damaged or truncated ({_first_line(exc)})") from None
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    header = Header(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                    tuple(image.GetDirection()))
    if min(header.spacing) <= 0:
        raise UnreadableFile(f"has voxel spacing {list(header.spacing)}; every spacing must be positive (fix the header)")
    orientation = orientation_of(header.direction, slice_axis)
    stored = sitk.GetArrayFromImage(image)
    spacing = tuple(float(header.spacing[2 - a]) for a in orientation.order)
    return Volume(orientation.to_canonical(stored), spacing, header, orientation)


def read_image_volume(path, slice_axis, max_voxels):
    """(Volume of float32 intensities, bit depth 8 or 16): 8 for unsigned 8-bit voxels, as for PNGs."""
    volume = read_volume(path, slice_axis, max_voxels)
    voxels = volume.voxels
    if voxels.dtype.kind == "f":
        bad = int(voxels.size - np.isfinite(voxels).sum())
        if bad:
            raise UnreadableFile(f"{bad:,} of its {voxels.size:,} voxels are not finite (NaN or inf); replace them "
                                 "(e.g. with the background value) and save it again")
    depth = 8 if voxels.dtype == np.uint8 else 16
    return dataclasses.replace(volume, voxels=voxels.astype(np.float32)), depth


def read_label_volume(path, slice_axis, max_voxels):
    """(Volume of int64 labels, kind such as 'uint8 volume'): whole, non-negative labels only."""
    volume = read_volume(path, slice_axis, max_voxels)
    voxels = volume.voxels
    if voxels.dtype.kind == "f":
        finite = np.isfinite(voxels)
        if not finite.all() or np.any(voxels != np.round(voxels)):
            bad = voxels[~finite] if not finite.all() else voxels[voxels != np.round(voxels)]
            raise UnreadableFile(f"label volume holds {bad.size:,} voxels that are not whole numbers (e.g. {bad.flat[0]}); "
                                 "labels are whole numbers 0, 1, 2, ...: a mask resampled with linear interpolation "
                                 "looks like this, resample labels with nearest neighbour")
    labels = voxels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 65535):
        worst = int(labels.min() if labels.min() < 0 else labels.max())
        raise UnreadableFile(f"label volume holds label {worst}, outside 0-65535; labels are whole numbers from 0 "
                             "(background)")
    return dataclasses.replace(volume, voxels=labels), f"{voxels.dtype} volume"


def write_label_volume(path, canonical_labels, volume):
    """Write labels given in `volume`'s canonical orientation into `path`, in the grid and header of the
    file `volume` was read from, atomically (written beside, renamed into place)."""
    stored = volume.orientation.to_stored(canonical_labels)
    _write(path, stored.astype(np.uint8 if stored.max(initial=0) <= 255 else np.uint16), volume.header)


def store(path, canonical, spacing, direction, slice_axis="sagittal"):
    """Write a new volume whose canonical form (LAYOUTS[slice_axis]) is `canonical`, with `spacing` (mm along
    the canonical axes), stored in the order `direction` (ITK's 3 x 3, row-major) gives: synthetic data and
    tests write one anatomy in any storage order with it."""
    orientation = orientation_of(direction, slice_axis)
    stored = orientation.to_stored(np.asarray(canonical))
    itk_spacing = [0.0] * 3
    for t, a in enumerate(orientation.order):
        itk_spacing[2 - a] = float(spacing[t])
    _write(path, stored, Header(tuple(reversed(stored.shape)), tuple(itk_spacing), (0.0, 0.0, 0.0),
                                tuple(float(v) for v in np.asarray(direction).ravel())))


def _write(path, stored, header):
    import SimpleITK as sitk
    image = sitk.GetImageFromArray(stored)
    image.SetSpacing(header.spacing)
    image.SetOrigin(header.origin)
    image.SetDirection(header.direction)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # SimpleITK picks the format from the suffix, so the temporary file keeps the real name in a hidden folder
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent))
    try:
        sitk.WriteImage(image, str(folder / path.name), useCompression=path.name.lower().endswith(".gz"))
        os.replace(folder / path.name, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def group_labels(labels, label_groups):
    """Labels merged into classes: group i of `label_groups` (in the order written) becomes label i + 1,
    every label in no group becomes background. No groups: the labels as they are."""
    if not label_groups:
        return labels
    lut = np.zeros(int(labels.max(initial=0)) + 1, np.int64)
    for value, members in enumerate(label_groups.values(), start=1):
        for label in members:
            if label < len(lut):
                lut[int(label)] = value
    return lut[labels]


def training_planes(labels, volume_cfg):
    """Indices of the canonical planes that become training slices (volume.train_planes, margin, step)."""
    planes = np.arange(labels.shape[0])
    if volume_cfg.train_planes == "foreground":
        holding = np.flatnonzero(labels.reshape(labels.shape[0], -1).any(axis=1))
        if holding.size:
            first, last = max(holding[0] - volume_cfg.margin, 0), min(holding[-1] + volume_cfg.margin, len(planes) - 1)
            planes = planes[first:last + 1]
    return planes[::volume_cfg.step]


def read_pair(image_path, mask_path, volume_cfg):
    """(image Volume, its bit depth, label Volume with label_groups applied, the mask's kind) of one subject.
    Raises UnreadableFile naming the file at fault; image and mask must share one grid."""
    try:
        image, depth = read_image_volume(image_path, volume_cfg.slice_axis, volume_cfg.max_voxels)
    except UnreadableFile as exc:
        raise UnreadableFile(f"{image_path}: {exc}; replace or remove the file") from None
    try:
        mask, kind = read_label_volume(mask_path, volume_cfg.slice_axis, volume_cfg.max_voxels)
    except UnreadableFile as exc:
        raise UnreadableFile(f"{mask_path}: {exc}") from None
    differs = image.header.matches(mask.header)
    if differs:
        raise UnreadableFile(f"{mask_path}: its {differs} of its image {Path(image_path).name}; a mask must share "
                             "its image's grid voxel for voxel (resample it onto the image with nearest neighbour)")
    return image, depth, dataclasses.replace(mask, voxels=group_labels(mask.voxels, volume_cfg.label_groups)), kind
