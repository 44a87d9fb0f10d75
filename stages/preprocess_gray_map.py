"""preprocess-gray-map: the gray map, and every split converted once into arrays at base_size.

python -m stages.preprocess_gray_map --images data/images --masks data/masks --split artifacts/split.json
    --graymap artifacts/graymap.json --prepared artifacts/prepared --samples plots/train_samples.png

With --fold K, --split is the folds file (artifacts/folds.json) and the arrays are fold K's
(cv-preprocess@K).
"""
import argparse
from pathlib import Path

from seglib import config
from seglib.graymap import build_graymap
from seglib.io import save_figure, write_json, write_npz
from seglib.errors import run_cli
from seglib.plots import samples_figure
from seglib.io import is_volume
from seglib.prepare import every_plane, intensity_stats, prepare_split, scan_gray_values
from seglib.prepared_meta import PreparedMeta
from seglib.split import PARTS, read_split

SAMPLES_SHOWN = 8


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--images", "--masks", "--split", "--graymap", "--prepared", "--samples"):
        parser.add_argument(name, required=True)
    parser.add_argument("--fold", type=int, help="prepare this cross-validation fold of the --split folds file")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    data_cfg, pre_cfg = config.section(params, "data"), config.section(params, "preprocess")
    volume_cfg = config.section(params, "volume")
    parts = read_split(args.split, args.fold)
    every_item = [item for part in PARTS for item in parts[part]]
    graymap = build_graymap(data_cfg.gray_values
                            or scan_gray_values(args.masks, every_item, pre_cfg.max_pixels, volume_cfg))
    arrays = {part: prepare_split(args.images, args.masks, parts[part], graymap["gray_values"], pre_cfg,
                                  volume_cfg if part == "train" else every_plane(volume_cfg))
              for part in PARTS}
    volumes = is_volume(every_item[0][0])
    meta = PreparedMeta(tuple(graymap["gray_values"]), **intensity_stats(arrays["train"]["images"]),
                        preprocess=pre_cfg, volume=volume_cfg if volumes else None)
    for part in PARTS:
        write_npz(Path(args.prepared) / f"{part}.npz", **arrays[part])
    write_json(Path(args.prepared) / "meta.json", meta.to_dict())
    write_json(args.graymap, graymap)
    train = arrays["train"]
    save_figure(samples_figure(train["images"][:SAMPLES_SHOWN], train["masks"][:SAMPLES_SHOWN],
                               train["names"][:SAMPLES_SHOWN]), args.samples)
    print(f"gray values {graymap['gray_values']} -> {graymap['num_classes']} classes; "
          + ", ".join(f"{p} {len(arrays[p]['images'])}" for p in PARTS) + f" at {list(pre_cfg.base_size)}")


if __name__ == "__main__":
    run_cli(main)
