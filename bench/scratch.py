"""A scratch copy of this project on another dataset, for benchmarks and tests."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
       "GIT_AUTHOR_NAME": "scratch", "GIT_AUTHOR_EMAIL": "scratch@localhost",
       "GIT_COMMITTER_NAME": "scratch", "GIT_COMMITTER_EMAIL": "scratch@localhost"}


def sh(*cmd, cwd, check=True, log=None):
    """Run a command with the venv on PATH; raise with its output when it fails.

    With `log`, output goes to that file as it is written (follow a long run
    with `tail -f`), and the failure message quotes the file's end.
    """
    cmd = [str(c) for c in cmd]
    if log is None:
        result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
        output = result.stdout[-3000:] + "\n" + result.stderr[-3000:]
    else:
        with Path(log).open("a") as stream:
            result = subprocess.run(cmd, cwd=cwd, env=ENV, stdout=stream, stderr=subprocess.STDOUT, text=True)
        output = Path(log).read_text()[-6000:]
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{output}")
    return result


def dvc(*args, cwd, check=True, log=None):
    return sh(BIN / "dvc", *args, cwd=cwd, check=check, log=log)


RESULTS = {"dvc.lock", "metrics", "plots", "reports"}  # the reference run's outputs, not source


def copy_source(dest):
    """The project's source as Git sees it (tracked and untracked-not-ignored), without results or data.

    `dest` must be new or empty: a scratch project never overwrites files it did not create.
    """
    if Path(dest).exists() and any(Path(dest).iterdir()):
        raise SystemExit(f"{dest}: not empty; a scratch project is built in a new or empty folder "
                         "(to continue a stopped run, run `dvc repro` there)")
    listing = sh("git", "ls-files", "--cached", "--others", "--exclude-standard", cwd=REPO).stdout.split("\n")
    for name in filter(None, listing):
        if name.split("/")[0] not in RESULTS and (REPO / name).is_file():
            (Path(dest) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, Path(dest) / name)
    return Path(dest)


def set_params(root, overrides):
    """Apply {"a.b": value} to root/params.yaml."""
    path = Path(root) / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = params
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def scratch_project(root, images=None, masks=None, overrides=(), synth_args=None, files=None):
    """A committed Git+DVC project at `root` whose data/ holds the given images and masks.

    `files` (optional) limits the copy to those image names; `synth_args` generates
    the built-in dataset with other arguments instead of copying folders.
    """
    root = copy_source(root)
    sh("git", "init", "-q", cwd=root)
    (root / "data.dvc").unlink()
    if synth_args is not None:
        sh(sys.executable, "-m", "seglib", "synth", "--out", root / "data", *synth_args, cwd=root)
    else:
        for folder, target in ((images, "images"), (masks, "masks")):
            (root / "data" / target).mkdir(parents=True)
            for path in sorted(Path(folder).iterdir()):
                if files is None or path.name in files[target]:
                    shutil.copy2(path, root / "data" / target / path.name)
    dvc("add", "-q", "data", cwd=root)
    set_params(root, dict(overrides))
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "scratch project", cwd=root)
    return root
