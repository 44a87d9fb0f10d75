"""Run dvc.yaml's stage commands in its order, without DVC, for a machine that has no dvc
(bench/gpu_check.sh on a GPU machine): the commands `dvc repro` runs on a fresh project, each
foreach stage expanded over the keys of its params list.

    python -m bench.stages_in_order            # in a project's root
"""
import shlex
import subprocess
import sys
import time

import yaml


def commands(pipeline, params):
    """(stage name, argv) in dvc.yaml's order, which is this pipeline's data-flow order."""
    for name, stage in pipeline["stages"].items():
        if "foreach" in stage:
            keys = params[stage["foreach"].strip("${}")]
            for key in keys:
                yield f"{name}@{key}", shlex.split(stage["do"]["cmd"].replace("${key}", key))
        else:
            yield name, shlex.split(stage["cmd"])


def main():
    with open("dvc.yaml") as f, open("params.yaml") as g:
        pipeline, params = yaml.safe_load(f), yaml.safe_load(g)
    for name, argv in commands(pipeline, params):
        start = time.perf_counter()
        argv = [sys.executable if a == "python" else a for a in argv]
        if subprocess.run(argv).returncode != 0:
            sys.exit(f"stage {name} failed")
        print(f"stage {name}: {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
