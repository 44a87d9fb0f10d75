"""Run dvc.yaml's stage commands in its order, without DVC, for a machine that has no dvc
(bench/gpu_check.sh on a GPU machine): the commands `dvc repro` runs on a fresh project, each
foreach and matrix stage expanded over its params as DVC expands it.

    python -m bench.stages_in_order            # in a project's root
"""
import itertools
import re
import shlex
import subprocess
import sys
import time

import yaml


def _lookup(params, reference):
    """The value of '${a.b}' in params; a mapping gives its keys, as DVC iterates it."""
    value = params
    for key in reference.strip("${}").split("."):
        value = value[key]
    return list(value) if isinstance(value, dict) else value


def _fill(cmd, values):
    """cmd with each ${name} of values replaced; an unfilled ${...} is a bug in the expansion."""
    for name, value in values.items():
        cmd = cmd.replace("${" + name + "}", str(value))
    if re.search(r"\$\{[^}]*\}", cmd):
        raise ValueError(f"unexpanded reference in {cmd!r}")
    return shlex.split(cmd)


def commands(pipeline, params):
    """(stage name, argv) in dvc.yaml's order, which is this pipeline's data-flow order."""
    for name, stage in pipeline["stages"].items():
        if "foreach" in stage:
            for key in _lookup(params, stage["foreach"]):
                yield f"{name}@{key}", _fill(stage["do"]["cmd"], {"key": key})
        elif "matrix" in stage:
            axes = {axis: _lookup(params, v) if isinstance(v, str) else v for axis, v in stage["matrix"].items()}
            for combo in itertools.product(*axes.values()):
                item = dict(zip(axes, combo))
                yield (f"{name}@{'-'.join(map(str, combo))}",
                       _fill(stage["cmd"], {f"item.{axis}": value for axis, value in item.items()}))
        else:
            yield name, _fill(stage["cmd"], {})


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
