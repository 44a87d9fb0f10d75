"""check-params: every key of params.yaml checked before any other stage runs.

python -m stages.check_params --params params.yaml --images data/images --out artifacts/params.checked

DVC removes a stage's outputs just before it runs that stage, so a wrong setting
found by the stage that reads it would cost that stage's committed results. This
stage depends on the whole of params.yaml and every other stage runs after it
(split depends on its output), so a wrong setting stops `dvc repro` and
`dvc exp run` here, before anything is removed. Settings keyed by subject are
checked against the subject ids of --images' file names (a listing, no file is
read); so is a pixel spacing set for volumes, whose headers hold theirs. Its
output never changes, so a valid change reruns only the stages that read the
changed keys.
"""
import argparse

from seglib import config
from seglib.check import check_subject_keys
from seglib.errors import SegError, run_cli
from seglib.io import write_text
from seglib.volume import check_spacing_source

CHECKED = "every key of params.yaml passed seglib.config.validate\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--images", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        params = config.load_params(args.params)
        eval_cfg = config.section(params, "evaluate")
        check_subject_keys(eval_cfg.subject_spacing, "evaluate.subject_spacing", args.images,
                           config.section(params, "data").group_regex)
        check_spacing_source(eval_cfg, args.images)
    except SegError as exc:
        raise SegError(f"{exc}\nNo stage ran and no output was removed; fix the setting (after a failed "
                       f"`dvc exp run -S`, `git checkout {args.params}` restores the committed one)") from None
    write_text(args.out, CHECKED)


if __name__ == "__main__":
    run_cli(main)
