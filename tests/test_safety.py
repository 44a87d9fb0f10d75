"""The safety matrix: wrong settings, damaged or hostile files and faults, each with one clear message,
exit code 2 and nothing written or changed (tests/test_bad_input.py holds the first part of it)."""
import json
import os
import pickle
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import REPO, run_module, square_pair, tiny_meta, write_pair
from seglib.checkpoint import save_checkpoint
from seglib.config import UNetConfig
from seglib.io import TEMP_SUFFIX, atomic_path, write_json
from seglib.models import build_model
from seglib.split import split_by_subject
from test_bad_input import assert_failed, check_params, preprocess, project, split  # noqa: F401 (project is a fixture)


def edit_params(project, change):
    params = yaml.safe_load((project / "params.yaml").read_text())
    change(params)
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def snapshot(folder):
    """{relative path: bytes} of every file under `folder`, to prove nothing changed."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- settings, all refused by the first stage

def _set(section, key, value):
    def change(params):
        (params if section is None else params[section] if "." not in section
         else params["models"][section.split(".")[1]])[key] = value
    return change


@pytest.mark.parametrize("change, message", [
    (_set(None, "trian", {"epochs": 3}), "trian: unknown top-level key in params.yaml (did you mean 'train'?)"),
    (_set(None, "epochs", 5), "epochs: unknown top-level key in params.yaml (it is a setting of train: or models.<name>:"),
    (_set("train", "epoch", 5), "train: unknown key(s) ['epoch'] (did you mean 'epochs'?)"),
    (_set("models.unet", "lr", float("nan")), "models.unet.lr: expected a finite number, got nan"),
    (_set("models.unet", "lr", float("inf")), "models.unet.lr: expected a finite number, got inf"),
    (_set("train", "weight_decay", -0.1), "train.weight_decay: must be in [0, 1], got -0.1"),
    (_set("data", "seed", -1), "data.seed: must be an integer from 0 to 4294967295, got -1"),
    (_set("train", "seed", 2 ** 40), "train.seed: must be an integer from 0 to 4294967295"),
    (_set(None, "model", "resnet"), "model: unknown model 'resnet'; choose one of ['deeplabv3', 'unet']"),
    (_set("data", "test_fraction", 0.0), "data.test_fraction: must be above 0 and below 1, got 0.0"),
    (_set("data", "val_fraction", 0.0), "data.val_fraction: must be above 0 and below 1, got 0.0"),
    (_set("models.unet", "width", 4096), "models.unet.width: must be 4 to 128, got 4096"),
    (_set("models.unet", "batch_size", True), "models.unet.batch_size: expected int, got True"),
    (_set("models.unet", "arch", "segformer"), "models.unet.arch: unknown architecture 'segformer'"),
    (_set("models.deeplabv3", "backbone", "vgg"), "models.deeplabv3.backbone: must be one of"),
    (_set("preprocess", "base_size", [16.5, 32]), "preprocess.base_size: expected [height, width], whole numbers"),
    (_set("runtime", "device", "tpu"), "runtime.device: use auto, cpu, cuda, cuda:N or mps; got 'tpu'"),
    (_set("train", "device", "cpu"), "train: unknown key(s) ['device'] (it is a setting of runtime:; move it there)"),
    (_set("models.deeplabv3", "width", 8),
     "models.deeplabv3: unknown key(s) ['width'] (it is a setting of models.<name>: of arch unet; move it there)"),
    (_set("compare", "bootstrap", 10), "compare.bootstrap: must be 100 to 1000000, got 10"),
    (_set("runtime", "threads", -1), "runtime.threads: must be 0 (all cores) to 1024, got -1"),
    (_set("runtime", "processes", 0), "runtime.processes: must be 1 to 64"),
    (_set("runtime", "deterministic", "yes"), "runtime.deterministic: expected"),
    (_set("data", "gray_values", [0]), "data.gray_values: expected at least two whole gray values"),
    (_set("models.unet", "weights", "/tmp/start.pt"), "models.unet.weights: must be a file under weights/ in the project"),
])
def test_any_wrong_setting_fails_the_first_stage(project, change, message):
    edit_params(project, change)
    assert_failed(check_params(project), message, "No stage ran and no output was removed", outputs=[project / "out"])
    assert_failed(split(project), message, outputs=[project / "out"])  # a stage run alone checks them too


def test_subject_spacing_keys_must_name_subjects_that_exist(project):
    edit_params(project, _set("evaluate", "subject_spacing", {"S07": [0.5, 0.5], "S1": [1.0, 1.0]}))
    assert_failed(check_params(project), "evaluate.subject_spacing: S07 match(es) no subject of",
                  "gives: S0, S1, S2, S3, S4, S5); use those ids", outputs=[project / "out"])
    edit_params(project, _set("evaluate", "subject_spacing", {"S1": [1.0, 1.0]}))
    assert check_params(project).returncode == 0 and (project / "out/params.checked").is_file()


def test_device_that_is_not_there_names_the_key(project):
    assert split(project).returncode == 0 and preprocess(project).returncode == 0
    if torch.backends.mps.is_available():
        pytest.skip("this machine has an Apple GPU")
    edit_params(project, _set("runtime", "device", "mps"))
    result = run_module("stages.train", "--model", "unet", "--prepared", project / "prep/arrays",
                        "--out", project / "models/unet", "--metrics", project / "o/unet.json",
                        "--log", project / "o/unet.csv", "--timing", project / "o/t.json", "--resume", project / "o/r.pt",
                        "--params", project / "params.yaml")
    assert_failed(result, "runtime.device: 'mps' asked for but no Apple GPU (MPS) is available here",
                  outputs=[project / "models", project / "o"])


# ---------------------------------------------------------------- files

def test_mask_of_another_bit_depth_is_named(project):
    _, mask = square_pair()
    Image.fromarray(mask.astype(np.uint16) * 257).save(project / "data/masks/S3_1.png")  # 0/65535, 16-bit
    assert_failed(split(project), "S3_1.png: a 16-bit mask among 11 8-bit masks", outputs=[project / "out"])


def test_non_finite_pixels_of_a_float_image_are_named(project):
    image = np.full((32, 32), 40.0, np.float32)
    image[3, 4], image[5, 6] = np.nan, np.inf
    (project / "data/images/S2_1.png").unlink()
    Image.fromarray(image, mode="F").save(project / "data/images/S2_1.tif")
    assert_failed(split(project), "S2_1.tif: 2 of its 1024 pixels are not finite (NaN or inf)", outputs=[project / "out"])


def test_a_32_bit_mask_beyond_16_bits_is_refused_in_the_check(project):
    _, mask = square_pair()
    (project / "data/masks/S4_0.png").unlink()
    Image.fromarray((mask > 0).astype(np.int32) * 70000, mode="I").save(project / "data/masks/S4_0.tif")
    assert_failed(split(project), "S4_0.tif: mask holds gray value 70000, outside 0-65535", outputs=[project / "out"])


def test_too_many_gray_values_name_the_masks_that_bring_them(project):
    _, mask = square_pair()
    smooth = mask.astype(np.float32)
    for _ in range(2):  # a blurred edge: many in-between values, as a resampled or JPEG mask has
        smooth = (smooth + np.roll(smooth, 1, 0) + np.roll(smooth, 1, 1)) / 3
    Image.fromarray(smooth.astype(np.uint8)).save(project / "data/masks/S5_1.png")
    edit_params(project, _set("data", "max_classes", 4))
    assert_failed(split(project), "more than data.max_classes (4)", "Most values: S5_1.png (", outputs=[project / "out"])


def test_synth_refuses_counts_it_cannot_write(tmp_path):
    for args, message in ((("--slices", -1), "--slices: must be 1 to 1000, got -1"),
                          (("--subjects", 100000000, "--slices", 0), "--subjects: must be 1 to 100000, got 100000000")):
        assert_failed(run_module("seglib", "synth", "--out", tmp_path / "d", *args), message, outputs=[tmp_path / "d"])


def test_more_threads_than_cores_is_warned_about_naming_both(capsys):
    from seglib.config import RuntimeConfig
    from seglib.runtime import use_runtime
    cores, before = len(os.sched_getaffinity(0)), torch.get_num_threads()
    try:
        use_runtime(RuntimeConfig(device="cpu", threads=cores + 1))
    finally:
        torch.set_num_threads(before)
    assert f"warning: runtime.threads: {cores + 1} threads on {cores} cores oversubscribe them" in capsys.readouterr().out


def test_a_multi_page_tiff_and_an_exif_turned_jpeg_are_named(project):
    image, _ = square_pair(offset=6)
    for name in ("S1_0.png", "S2_0.png"):
        (project / "data/images" / name).unlink()
    pages = [Image.fromarray(image), Image.fromarray(image[::-1].copy())]
    pages[0].save(project / "data/images/S1_0.tif", save_all=True, append_images=pages[1:])
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(image).save(project / "data/images/S2_0.jpg", exif=exif)
    assert_failed(split(project), "S1_0.tif: holds 2 pages (a stack or a volume?)",
                  "S2_0.jpg: has EXIF orientation 6: viewers show it turned", outputs=[project / "out"])


def test_subfolders_all_foreground_masks_and_duplicate_keys_are_reported(project):
    (project / "data/images/more").mkdir()
    Image.fromarray(square_pair()[0]).save(project / "data/images/more/S9_0.png")
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(project / "data/masks/S3_0.png")
    result = split(project)
    assert result.returncode == 0, result.stderr
    assert "1 subfolder(s) holding images are not read (e.g. more/)" in result.stdout
    assert "1 mask(s) are one foreground class throughout (e.g. S3_0.png): an inverted mask" in result.stdout
    assert json.loads((project / "out/report.json").read_text())["empty_masks"] == 0  # not "empty"
    with (project / "params.yaml").open("a") as params:
        params.write("compare:\n  seed: 1\n")
    assert_failed(check_params(project), "params.yaml: not valid YAML (key 'compare' appears twice in one mapping",
                  outputs=[project / "out/params.checked"])


def test_two_images_of_one_mask_are_listed(project):
    image, _ = square_pair(offset=9)
    Image.fromarray(image).save(project / "data/images/S2_0.jpg")
    assert_failed(split(project), "S2_0.png: is the mask of several images (S2_0.jpg, S2_0.png)",
                  outputs=[project / "out"])


def test_hidden_files_are_skipped_and_reported(project):
    (project / "data/images/._S0_0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (project / "data/masks/._S0_0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    result = split(project)
    assert result.returncode == 0, result.stderr
    assert "skipped 1 hidden file(s) with a leading dot (e.g. ._S0_0.png" in result.stdout


def test_palette_mask_gets_advice_that_keeps_the_indices(project):
    _, mask = square_pair()
    palette = Image.new("P", (32, 32))
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putdata((mask > 0).astype(np.uint8).ravel().tolist())
    palette.save(project / "data/masks/S1_1.png")
    assert_failed(split(project), "S1_1.png: mask is a palette image (mode 'P')",
                  "Image.fromarray(np.asarray(Image.open(p))).save(p)", outputs=[project / "out"])


def _empty_all_masks_but(project, keep):
    for mask in (project / "data/masks").iterdir():
        if not mask.name.startswith(keep):
            Image.fromarray(np.zeros((32, 32), np.uint8)).save(mask)


def _part_of_subjects(project):
    params = yaml.safe_load((project / "params.yaml").read_text())["data"]
    units = {f"S{s}_{k}.png": f"S{s}" for s in range(6) for k in range(2)}
    parts = split_by_subject([(i, i) for i in units], units, params["val_fraction"], params["test_fraction"],
                             params["seed"])
    return {part: sorted({units[i] for i, _ in items}) for part, items in parts.items()}


def test_class_absent_from_training_masks_is_an_error(project):
    _empty_all_masks_but(project, _part_of_subjects(project)["test"][0] + "_")
    assert_failed(split(project), "class 1 (gray value 255) appears in none of the 8 train masks",
                  "the model cannot learn it", outputs=[project / "out"])


def test_class_absent_from_a_scored_split_is_a_warning(project):
    parts = _part_of_subjects(project)
    _empty_all_masks_but(project, tuple(f"{s}_" for s in parts["train"] + parts["test"]))
    result = split(project)
    assert result.returncode == 0, result.stderr
    assert "warning: class 1 (gray value 255) appears in none of the 2 val masks" in result.stdout


def test_decompression_bomb_is_refused_from_its_header(project):
    Image.new("L", (12000, 12000)).save(project / "data/images/S0_1.png")  # about 150 kB on disk
    assert_failed(split(project), "S0_1.png: 12000x12000 = 144,000,000 pixels, more than preprocess.max_pixels "
                  "(16,777,216); read from the header, nothing decoded", outputs=[project / "out"])


def test_link_outside_the_dataset_is_warned_about(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "S0_0.png"
    (project / "data/images/S0_0.png").rename(elsewhere)
    (project / "data/images/S0_0.png").symlink_to(elsewhere)
    result = split(project)
    assert result.returncode == 0, result.stderr
    assert "S0_0.png: a symbolic link to" in result.stdout and "outside the dataset" in result.stdout


def test_synth_never_writes_into_a_users_folder(tmp_path):
    write_pair(tmp_path / "data", "mine", *square_pair())
    before = snapshot(tmp_path / "data")
    result = run_module("seglib", "synth", "--out", tmp_path / "data")
    assert_failed(result, "images: not empty; synth writes only into new or empty folders")
    assert snapshot(tmp_path / "data") == before


def test_scratch_project_never_writes_into_a_full_folder(tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("mine")
    result = subprocess.run([sys.executable, "-m", "bench.real_data", "--images", tmp_path, "--masks", tmp_path,
                             "--workdir", tmp_path / "work"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "work: not empty" in result.stderr
    assert snapshot(tmp_path / "work") == {(tmp_path / "work" / "notes.txt").relative_to(tmp_path / "work"): b"mine"}


def test_scratch_project_build_only_commits_the_data_and_runs_nothing(tmp_path):
    for case in range(2):
        write_pair(tmp_path / "in", f"Case0{case}_Slice1", *square_pair(), mask_stem=f"Case0{case}_Labels_slice1")
    result = subprocess.run([sys.executable, "-m", "bench.real_data", "--images", tmp_path / "in" / "images",
                             "--masks", tmp_path / "in" / "masks", "--workdir", tmp_path / "work", "--build-only",
                             "--set", "train.epochs=3"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    work = tmp_path / "work"
    assert sorted(p.name for p in (work / "data" / "masks").iterdir()) == ["Case00_Labels_slice1.png",
                                                                        "Case01_Labels_slice1.png"]
    assert yaml.safe_load((work / "params.yaml").read_text())["train"]["epochs"] == 3
    git = lambda *args: subprocess.run(["git", *args], cwd=work, capture_output=True, text=True).stdout
    assert git("status", "--porcelain") == "" and len(git("log", "--oneline").splitlines()) == 1
    assert not (work / "repro.log").exists() and not (work / "artifacts" / "split.json").exists()


# ---------------------------------------------------------------- checkpoints

@pytest.fixture
def checkpoint(tmp_path):
    cfg = UNetConfig(width=4)
    save_checkpoint(tmp_path / "model.pt", build_model(cfg, 2), cfg, tiny_meta(), "unet")
    return tmp_path / "model.pt"


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, offset in (("a.png", 4), ("b.png", 9)):
        Image.fromarray(square_pair(offset=offset)[0]).save(folder / name)
    return folder


def predict(checkpoint, inputs, output, *extra):
    return run_module("seglib", "predict", "--checkpoint", checkpoint, "--input", inputs, "--output", output,
                      "--device", "cpu", *extra)


class Payload:
    """Pickled, it would create a file when unpickled: proof that loading never ran it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _tampered(checkpoint, path, change):
    ckpt = torch.load(checkpoint, weights_only=True)
    change(ckpt)
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda c, p: p.write_bytes(b""), "the checkpoint file is empty"),
    (lambda c, p: p.write_bytes(os.urandom(256)), "not a PyTorch checkpoint file"),
    (lambda c, p: _tampered(c, p, lambda k: k["settings"].update(width=4096)), "settings.width: must be 4 to 128, got 4096"),
    (lambda c, p: _tampered(c, p, lambda k: k["settings"].update(colour="red")), "settings: unknown key(s) ['colour']"),
    (lambda c, p: _tampered(c, p, lambda k: k["meta"].pop("gray_values")), "meta: missing key(s) ['gray_values']"),
    (lambda c, p: _tampered(c, p, lambda k: k["meta"].update(std=float("nan"))), "meta.std: expected a number"),
    (lambda c, p: _tampered(c, p, lambda k: k["meta"]["preprocess"].update(base_size=[8, 8])),
     "meta.preprocess.base_size: expected [height, width], whole numbers from 16 to 4096"),
    (lambda c, p: _tampered(c, p, lambda k: k.update(format=99)), "not a checkpoint written by this pipeline"),
])
def test_damaged_checkpoint_is_refused_before_anything_is_built(tmp_path, checkpoint, inputs, make, message):
    make(checkpoint, tmp_path / "bad.pt")
    assert_failed(predict(tmp_path / "bad.pt", inputs, tmp_path / "out"), "bad.pt: ", message,
                  outputs=[tmp_path / "out"])


def test_checkpoint_with_pickled_objects_runs_nothing_and_says_why(tmp_path, checkpoint, inputs):
    marker = tmp_path / "payload-ran"
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["meta"]["name"] = Payload(marker)
    torch.save(ckpt, tmp_path / "hostile.pt", pickle_protocol=pickle.DEFAULT_PROTOCOL)
    result = predict(tmp_path / "hostile.pt", inputs, tmp_path / "out")
    assert_failed(result, "hostile.pt: the checkpoint holds Python objects, not only tensors",
                  "it was not loaded", outputs=[tmp_path / "out", marker])
    assert "weights_only" not in result.stderr


def test_missing_checkpoint_says_how_to_get_it_back(tmp_path, inputs):
    assert_failed(predict(tmp_path / "models/unet/model.pt", inputs, tmp_path / "out"),
                  "model.pt: checkpoint not found", "`dvc checkout", outputs=[tmp_path / "out"])


def test_a_folder_or_file_where_the_other_is_expected_says_what_was_found(tmp_path, checkpoint, inputs):
    assert_failed(predict(checkpoint.parent, inputs, tmp_path / "out"),
                  f"{checkpoint.parent}: a folder, not a checkpoint file; give the file, e.g.", outputs=[tmp_path / "out"])
    image = next(inputs.iterdir())
    assert_failed(predict(checkpoint, image, tmp_path / "out"),
                  f"--input {image}: expected a folder of images, found a file there", outputs=[tmp_path / "out"])


def test_a_model_name_that_is_unsafe_in_paths_and_commands_is_refused(project):
    edit_params(project, lambda params: params["models"].update({"my unet": {"arch": "unet"}}))
    assert_failed(check_params(project), "models: 'my unet' cannot be a model name", "letters, digits",
                  outputs=[project / "out"])


def test_an_output_path_that_is_a_file_is_refused_before_the_model_loads(tmp_path, checkpoint, inputs):
    (tmp_path / "masks.png").write_bytes(b"a user's file")
    assert_failed(predict(checkpoint, inputs, tmp_path / "masks.png"),
                  f"--output {tmp_path / 'masks.png'}: {tmp_path / 'masks.png'} is a file, not a folder")
    assert (tmp_path / "masks.png").read_bytes() == b"a user's file"


def test_a_full_disk_is_one_message_naming_the_path_with_its_own_exit_code(tmp_path, checkpoint, inputs,
                                                                           monkeypatch, capsys):
    import errno

    from seglib import __main__ as cli
    from seglib.errors import run_cli

    def full(path, _):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr("seglib.predict.write_png", full)
    with pytest.raises(SystemExit) as stop:
        run_cli(cli.main, ["predict", "--checkpoint", str(checkpoint), "--input", str(inputs),
                           "--output", str(tmp_path / "out"), "--device", "cpu"])
    assert stop.value.code == 3  # 2: a mistake in the input; 1: some files skipped
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'out' / 'a.png'}: No space left on device; the disk is full" in err, err
    assert "Traceback" not in err and not list((tmp_path / "out").glob("*.png"))


def test_identical_weights_give_identical_checkpoint_bytes(tmp_path):
    cfg = UNetConfig(width=4)
    torch.manual_seed(0)
    model = build_model(cfg, 2)
    save_checkpoint(tmp_path / "one.pt", model, cfg, tiny_meta(), "unet")
    save_checkpoint(tmp_path / "other_name.pt", model, cfg, tiny_meta(), "unet")
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "again.pt", build_model(cfg, 2), cfg, tiny_meta(), "unet")
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "other_name.pt").read_bytes() \
        == (tmp_path / "again.pt").read_bytes()


# ---------------------------------------------------------------- predict never touches a user's files

@pytest.mark.parametrize("where, message", [
    (lambda t: t / "in", "--output {}: is the input folder or inside it"),
    (lambda t: t / "in" / "masks", "--output {}: is the input folder or inside it"),
    (lambda t: t, "--output {}: holds input images"),
])
def test_output_folder_that_is_or_holds_the_input_is_refused(tmp_path, checkpoint, inputs, where, message):
    before = snapshot(tmp_path)
    output = where(tmp_path)
    assert_failed(predict(checkpoint, inputs, output), message.format(output.resolve()), "nothing was written")
    assert snapshot(tmp_path) == before


def test_inputs_sharing_a_stem_are_listed_and_nothing_is_written(tmp_path, checkpoint, inputs):
    Image.fromarray(square_pair()[0]).save(inputs / "a.tif")
    assert_failed(predict(checkpoint, inputs, tmp_path / "out"), "inputs share a name stem", "a.png, a.tif",
                  outputs=[tmp_path / "out"])


def test_existing_masks_are_kept_unless_overwrite_is_asked(tmp_path, checkpoint, inputs):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"my own mask")
    assert_failed(predict(checkpoint, inputs, tmp_path / "out"), "1 output file(s) already exist",
                  "--overwrite")
    assert snapshot(tmp_path / "out") == {(tmp_path / "out" / "a.png").relative_to(tmp_path / "out"): b"my own mask"}
    result = predict(checkpoint, inputs, tmp_path / "out", "--overwrite")
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "out" / "a.png").size == (32, 32)


def test_overlays_in_the_mask_folder_are_refused(tmp_path, checkpoint, inputs):
    assert_failed(predict(checkpoint, inputs, tmp_path / "out", "--overlays", tmp_path / "out"),
                  "--output and --overlays: the same folder", outputs=[tmp_path / "out"])


def test_unknown_predict_device_is_one_message(tmp_path, checkpoint, inputs):
    result = run_module("seglib", "predict", "--checkpoint", checkpoint, "--input", inputs,
                        "--output", tmp_path / "out", "--device", "tpu")
    assert_failed(result, "--device: use auto, cpu, cuda, cuda:N or mps; got 'tpu'", outputs=[tmp_path / "out"])


# ---------------------------------------------------------------- faults and file modes

def test_outputs_keep_the_users_umask(tmp_path):
    for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        old = os.umask(mask)
        try:
            write_json(tmp_path / f"{mask:o}.json", {"a": 1})
        finally:
            os.umask(old)
        assert stat.S_IMODE((tmp_path / f"{mask:o}.json").stat().st_mode) == mode


def test_a_killed_write_leaves_nothing_in_the_output_and_is_cleaned_by_the_next(tmp_path):
    target = tmp_path / "plots" / "unet.csv"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert not target.exists() and list(target.parent.iterdir()) == []
    leftover = target.parent / f".unet.csv.dead{TEMP_SUFFIX}"  # as a SIGKILL between write and rename leaves it
    leftover.write_text("half")
    write_json(target, {"a": 1})
    assert [p.name for p in target.parent.iterdir()] == ["unet.csv"]
    for ignore in (".gitignore", ".dvcignore"):
        assert f"*{TEMP_SUFFIX}" in (REPO / ignore).read_text().split(), ignore
