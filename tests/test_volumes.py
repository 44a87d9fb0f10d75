"""Volumes: orientation, round trips, 3-D scores against hand-computed values, hostile files, predict's
output grid, and a tiny volume pipeline through the real dvc binary."""
import itertools
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from bench.scratch import REPO, dvc, sh
from seglib.config import VolumeConfig
from seglib.evaluate import ScoredSplit, evaluate_volumes
from seglib.metrics import per_image, surface_distances
from seglib.postprocess import none as no_rules
from seglib.prepare import every_plane, prepare_volumes
from seglib.predict import predict_volume
from seglib.prepared_meta import PreparedMeta
from seglib.synth import generate
from seglib.config import PreprocessConfig
from seglib.volume import read_label_volume, read_volume, store, training_planes, write_label_volume
from tiny_project import make_tiny_repo, ran_stages, DEFAULT_STAGES

LPS = (1, 0, 0, 0, 1, 0, 0, 0, 1)
RAS = (-1, 0, 0, 0, -1, 0, 0, 0, 1)      # what ITK reports for a NIfTI file stored RAS
PERMUTED = (0, 0, 1, -1, 0, 0, 0, -1, 0)  # index x -> anterior, y -> inferior, z -> left
ORDERS = {"LPS": LPS, "RAS": RAS, "permuted": PERMUTED}


def _labels(shape=(6, 10, 12), seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4, size=shape).astype(np.uint8)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("suffix", [".nii.gz", ".mha", ".nrrd"])
def test_volume_slices_reassemble_to_the_same_labels_and_grid(tmp_path, order, suffix):
    canonical, spacing = _labels(), (3.0, 0.8, 1.2)
    path = tmp_path / f"v{suffix}"
    store(path, canonical, spacing, ORDERS[order])
    volume = read_volume(path, "sagittal", 10 ** 6)
    assert np.array_equal(volume.voxels, canonical) and volume.spacing == pytest.approx(spacing)
    planes = [volume.voxels[k] for k in range(len(volume.voxels))]  # what preprocess slices
    out = tmp_path / f"out{suffix}"
    write_label_volume(out, np.stack(planes), volume)
    written, original = sitk.ReadImage(str(out)), sitk.ReadImage(str(path))
    assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(original))
    for get in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(written, get)() == pytest.approx(getattr(original, get)())
    assert not list(tmp_path.glob(".*"))  # no temporary left behind


@pytest.mark.parametrize("order", ORDERS)
def test_canonical_axes_follow_the_anatomy_in_the_header(tmp_path, order):
    """Each voxel holds its own physical coordinate (from ITK's geometry): in the canonical array planes run
    right -> left, rows superior -> inferior, columns anterior -> posterior, whatever the storage order."""
    image = sitk.Image((4, 5, 6), sitk.sitkFloat32)
    image.SetDirection(ORDERS[order])
    image.SetSpacing((1.0, 2.0, 3.0))
    coords = np.zeros((6, 5, 4, 3))
    for index in itertools.product(range(4), range(5), range(6)):
        coords[index[::-1]] = image.TransformIndexToPhysicalPoint(index)
    canonical = {}
    for axis, name in enumerate("xyz"):  # LPS: x to the left, y posterior, z superior
        coord = sitk.GetImageFromArray(coords[..., axis].astype(np.float32))
        coord.CopyInformation(image)
        sitk.WriteImage(coord, str(tmp_path / f"{name}.nii.gz"))
        canonical[name] = read_volume(tmp_path / f"{name}.nii.gz", "sagittal", 10 ** 6).voxels
    assert (np.diff(canonical["x"], axis=0) > 0).all()   # planes towards the patient's left
    assert (np.diff(canonical["z"], axis=1) < 0).all()   # rows downwards
    assert (np.diff(canonical["y"], axis=2) > 0).all()   # columns towards the back
    axial = read_volume(tmp_path / "z.nii.gz", "axial", 10 ** 6).voxels
    assert (np.diff(axial, axis=0) < 0).all()            # axial planes from the top


def test_training_planes_select_foreground_with_margin_and_step():
    labels = np.zeros((20, 4, 4), np.uint8)
    labels[7:11, 1, 1] = 1
    assert training_planes(labels, VolumeConfig()).tolist() == list(range(20))
    assert training_planes(labels, VolumeConfig(train_planes="foreground", margin=2)).tolist() == list(range(5, 13))
    assert training_planes(labels, VolumeConfig(train_planes="foreground", margin=0, step=2)).tolist() == [7, 9]
    assert training_planes(labels, every_plane(VolumeConfig(train_planes="foreground", step=3))).tolist() \
        == list(range(20))


def _brute_force(truth, pred, spacing):
    """HD95 and ASSD from every pair of boundary voxels: an implementation independent of the distance transform."""
    def edge(mask):
        padded = np.pad(mask, 1)
        inner = np.ones_like(mask)
        for axis in range(3):
            inner &= np.roll(padded, 1, axis)[1:-1, 1:-1, 1:-1] & np.roll(padded, -1, axis)[1:-1, 1:-1, 1:-1]
        return np.argwhere(mask & ~inner) * np.asarray(spacing)
    a, b = edge(truth), edge(pred)
    d = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    d_ab, d_ba = d.min(1), d.min(0)
    return max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)), np.concatenate([d_ab, d_ba]).mean()


def test_3d_scores_against_hand_computed_values():
    truth = np.zeros((8, 8, 8), bool)
    truth[2:4, 2:6, 2:6] = True                     # two planes thick: every voxel is on the surface
    spacing = (2.0, 1.0, 0.5)
    shifted = np.roll(truth, 1, axis=0)             # one plane (2 mm) further
    # truth plane 2 is 2 mm from the prediction, plane 3 lies on it; the same the other way
    assert surface_distances(truth, shifted, spacing) == pytest.approx((2.0, 1.0))
    (row,) = per_image(truth.astype(int), shifted.astype(int), 2, spacing)
    assert row["dice"] == pytest.approx(0.5) and row["iou"] == pytest.approx(1 / 3)
    sideways = np.roll(truth, 1, axis=2)            # one column (0.5 mm) further
    # 8 of 32 voxels each way are 0.5 mm off: HD95 0.5, ASSD 16 * 0.5 / 64
    assert surface_distances(truth, sideways, spacing) == pytest.approx((0.5, 0.125))
    assert surface_distances(truth, truth, spacing) == (0.0, 0.0)
    rng = np.random.default_rng(1)
    for _ in range(5):
        a = rng.random((6, 7, 8)) < 0.3
        b = a ^ (rng.random(a.shape) < 0.1)
        sp = tuple(rng.uniform(0.4, 3.0, 3))
        assert surface_distances(a, b, sp) == pytest.approx(_brute_force(a, b, sp), abs=1e-9)


class _Threshold:
    """A model-free predictor: foreground wherever the prepared image is bright (the image is the truth)."""
    batch_size = 4
    postprocess = no_rules(2)

    def __init__(self, meta):
        self.meta = meta

    def classes(self, images, sizes):
        for image, size in zip(images, sizes):
            assert image.shape == tuple(size)
            yield (image > 127).astype(np.uint8)


def test_a_prediction_equal_to_the_truth_scores_one_in_3d_for_every_storage_order(tmp_path):
    truth = np.zeros((7, 16, 16), np.uint8)
    truth[2:5, 3:12, 4:10] = 1                      # planes 0, 1, 5 and 6 are empty: scored too
    for name, direction in ORDERS.items():
        store(tmp_path / "images" / f"{name}.nii.gz", truth * 200, (3.0, 1.0, 1.0), direction)
        store(tmp_path / "masks" / f"{name}.nii.gz", truth, (3.0, 1.0, 1.0), direction)
    items = [(f"{n}.nii.gz", f"{n}.nii.gz") for n in ORDERS]
    pre_cfg, volume_cfg = PreprocessConfig(base_size=(16, 16)), VolumeConfig()
    prepared = prepare_volumes(tmp_path / "images", tmp_path / "masks", items, [0, 1], pre_cfg, volume_cfg)
    assert len(prepared["images"]) == 3 * 7 and prepared["names"][2] == "LPS.nii.gz#2"
    meta = PreparedMeta((0, 1), 0.5, 0.2, pre_cfg, volume_cfg)
    split = ScoredSplit(prepared, items, tmp_path / "masks", {image: image for image, _ in items})
    evaluation, _ = evaluate_volumes(_Threshold(meta), split)
    assert [row["image"] for row in evaluation.rows] == [image for image, _ in items]
    for row in evaluation.rows:
        assert (row["status"], row["dice"], row["hd95"], row["assd"]) == ("scored", 1.0, 0.0, 0.0)
    metrics = evaluation.metrics()
    assert metrics["fg_dice"] == 1.0 and metrics["images"] == 3
    assert metrics["per_slice"]["both_empty"] == 3 * 4 and metrics["per_slice"]["images_scored"] == 3 * 3


def _nifti(path, array, spacing=(1.0, 1.0, 1.0), direction=LPS):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    if array.ndim == 3:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))


def _hostile(tmp_path):
    """{name: (make the image and mask, the message expected)}: one broken pair each."""
    good = np.zeros((6, 8, 8), np.uint8)
    good[2:4, 2:6, 2:6] = 1
    image = (good * 100 + 20).astype(np.uint8)

    def pair(image_array, mask_array, suffix=".nii.gz", **mask_header):
        def make(root):
            _nifti(root / "images" / f"Case1{suffix}", image_array)
            _nifti(root / "masks" / f"Case1{suffix}", mask_array, **mask_header)
        return make

    def truncated(root):
        pair(image, good)(root)
        data = (root / "images" / "Case1.nii.gz").read_bytes()
        (root / "images" / "Case1.nii.gz").write_bytes(data[:len(data) // 2])

    def four_d(root):  # a time series of two volumes
        frame = sitk.GetImageFromArray(image)
        sitk.WriteImage(sitk.JoinSeries([frame, frame]), str(root / "images" / "Case1.nii.gz"))
        _nifti(root / "masks" / "Case1.nii.gz", good)

    nan = image.astype(np.float32)
    nan[0, 0, 0] = np.nan
    return {
        "4-D": (four_d, "is 4-D"),
        "2-D": (pair(image[0], good), "is 2-D"),
        "shape": (pair(image, good[:, :, :7]), "size [7, 8, 6] differs"),
        "spacing": (pair(image, good, spacing=(1.0, 1.0, 2.0)), "voxel spacing"),
        "orientation": (pair(image, good, direction=RAS), "orientation"),
        "fractional labels": (pair(image, good * 0.5), "not whole numbers"),
        "negative labels": (pair(image, good.astype(np.int16) - 1), "label -1"),
        # ITK's NIfTI reader turns NaN and inf into 0 before anyone sees them; MetaImage keeps them
        "NaN": (pair(nan, good, ".mha"), "not finite"),
        "truncated": (truncated, "damaged"),
        "too many voxels": (pair(np.zeros((17, 16, 16), np.uint8), np.zeros((17, 16, 16), np.uint8)),
                            "more than volume.max_voxels"),
    }


def test_hostile_volumes_get_one_message_naming_the_file_and_nothing_written(tmp_path):
    for name, (make, expected) in _hostile(tmp_path).items():
        root = tmp_path / name.replace(" ", "_")
        for folder in ("images", "masks"):
            (root / folder).mkdir(parents=True)
        make(root)
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["data"].update(image_token="", mask_token="", group_regex="")
        params["volume"]["max_voxels"] = 4096 if name == "too many voxels" else 10 ** 6
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        out = subprocess.run([sys.executable, "-m", "seglib", "check", "--images", root / "images", "--masks",
                              root / "masks", "--params", root / "params.yaml", "--json", root / "report.json"],
                             capture_output=True, text=True, cwd=root)
        assert out.returncode == 2, (name, out.stderr)
        assert expected in out.stderr and "Case1." in out.stderr, (name, out.stderr)
        assert "Traceback" not in out.stderr and not (root / "report.json").exists(), name


@pytest.fixture(scope="module")
def volume_project(tmp_path_factory):
    """The tiny project on synthetic volumes (three storage orders), reproduced through dvc."""
    root = make_tiny_repo(tmp_path_factory.mktemp("volumes") / "project", subjects=6, slices=3, volumes=True,
                          overrides={"data.image_token": "", "data.mask_token": "", "data.group_regex": "",
                                     "data.val_fraction": 0.17, "data.test_fraction": 0.34})
    output = dvc("repro", cwd=root).stdout
    assert ran_stages(output) == DEFAULT_STAGES, output
    return root


def test_a_volume_pipeline_scores_per_subject_in_3d_through_dvc(volume_project):
    root = volume_project
    split = json.loads((root / "artifacts" / "split.json").read_text())
    tested = sorted(image for image, _ in split["test"])
    assert len(tested) == 2 and all(name.endswith(".nii.gz") for name in tested)
    for model in ("unet", "deeplabv3"):
        metrics = json.loads((root / "metrics" / "test" / f"{model}.json").read_text())
        assert (metrics["scored_per"], metrics["units"], metrics["images"]) == ("volume", "mm", 2)
        assert metrics["per_slice"]["images_scored"] + metrics["per_slice"]["both_empty"] == 2 * 3
        rows = (root / "plots" / "eval" / f"{model}.csv").read_text().splitlines()[1:]
        assert sorted(row.split(",")[0] for row in rows) == tested    # one 3-D row per subject
        total = np.asarray(metrics["confusion"]).sum()
        sizes = [np.prod(sitk.ReadImage(str(root / "data" / "masks" / t)).GetSize()) for t in tested]
        assert total == sum(sizes)                                   # every voxel of every test volume
    compare = json.loads((root / "metrics" / "compare.json").read_text())
    assert compare["paired_image_dice"]["unet_minus_deeplabv3"]["n"] == 2
    assert sorted(compare["per_subject_dice"]["unet"]) == tested and compare["scored_per"] == "volume"
    report = (root / "reports" / "report.md").read_text()
    assert "scored whole in 3D" in report and "mean per-volume Dice difference" in report
    assert dvc("status", cwd=root).stdout.strip() == "Data and pipelines are up to date."


def test_predicted_labels_land_on_the_input_voxels_whatever_the_storage_order(tmp_path):
    """With a model-free predictor (foreground where the image is bright), the written label volume must
    equal the thresholded input voxel for voxel, in the input's own storage order and header."""
    truth = np.zeros((5, 16, 12), np.uint8)
    truth[1:4, 2:9, 3:7] = 1
    truth[2, 12:15, 1:3] = 1                        # an asymmetric blob: a flipped axis would move it
    pre_cfg = PreprocessConfig(base_size=(16, 12))
    meta = PreparedMeta((0, 1), 0.5, 0.2, pre_cfg, VolumeConfig())
    for name, direction in ORDERS.items():
        source = tmp_path / "in" / f"{name}.nii.gz"
        store(source, truth * 200, (3.0, 1.0, 1.0), direction)
        predict_volume(_Threshold(meta), no_rules(2), source, {"--output": tmp_path / "out"})
        written, given = sitk.ReadImage(str(tmp_path / "out" / f"{name}.nii.gz")), sitk.ReadImage(str(source))
        assert np.array_equal(sitk.GetArrayFromImage(written), (sitk.GetArrayFromImage(given) > 127).astype(np.uint8))
        for get in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
            assert getattr(written, get)() == pytest.approx(getattr(given, get)())


def test_predict_on_volumes_writes_each_in_its_grid_and_skips_a_broken_one(volume_project, tmp_path):
    source = volume_project / "data" / "images" / "Case002.nii.gz"     # stored RAS
    (tmp_path / "in").mkdir()
    shutil.copy(source, tmp_path / "in" / "Case002.nii.gz")
    data = source.read_bytes()
    (tmp_path / "in" / "broken.nii.gz").write_bytes(data[:len(data) // 2])
    out = sh(sys.executable, "-m", "seglib", "predict", "--checkpoint", volume_project / "models" / "unet" / "model.pt",
             "--input", tmp_path / "in", "--output", tmp_path / "out", cwd=volume_project, check=False)
    assert out.returncode == 1 and "broken.nii.gz" in out.stderr and "damaged" in out.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["Case002.nii.gz"]
    written, given = sitk.ReadImage(str(tmp_path / "out" / "Case002.nii.gz")), sitk.ReadImage(str(source))
    for get in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(written, get)() == pytest.approx(getattr(given, get)())


def test_volumes_refuse_a_pixel_spacing_and_a_mix_with_2d_images(tmp_path):
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
        store(tmp_path / folder / "Case1.nii.gz", np.ones((3, 8, 8), np.uint8), (3.0, 1.0, 1.0), LPS)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(image_token="", mask_token="", group_regex="")
    params["evaluate"]["pixel_spacing"] = [0.5, 0.5]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = sh(sys.executable, "-m", "stages.check_params", "--params", tmp_path / "params.yaml", "--images",
             tmp_path / "images", "--out", tmp_path / "checked", cwd=REPO, check=False)
    assert out.returncode == 2 and "whose headers give the spacing" in out.stderr and not (tmp_path / "checked").exists()
    params["evaluate"]["pixel_spacing"] = None
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    generate(tmp_path / "slices", subjects=1, slices=1)
    shutil.copy(tmp_path / "slices" / "images" / "Case001_Slice01.png", tmp_path / "images" / "Case2.png")
    shutil.copy(tmp_path / "slices" / "masks" / "Case001_Labels_slice01.png", tmp_path / "masks" / "Case2.png")
    out = sh(sys.executable, "-m", "seglib", "check", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
             "--params", tmp_path / "params.yaml", cwd=REPO, check=False)
    assert out.returncode == 2 and "1 volume(s) and 1 2-D image(s)" in out.stderr
