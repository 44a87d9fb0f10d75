"""The pipeline's wiring and the house rules: each stage's dvc.yaml deps equal its import closure, data.dvc is
reproducible, no import loops, at most six parameters per function, models named in one place of dvc.yaml."""
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO


def _imports(path):
    """seglib modules imported by one file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "seglib":
            if node.module == "seglib":
                found.update(f"seglib.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("seglib."))
    return found


def import_closure(stage_file):
    todo, seen = [stage_file], set()
    while todo:
        for module in _imports(todo.pop()):
            path = REPO / (module.replace(".", "/") + ".py")
            if path.is_file() and module not in seen:
                seen.add(module)
                todo.append(path)
    return {m.replace(".", "/") + ".py" for m in seen}


def test_stage_deps_equal_their_import_closure():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        module = stage["cmd"].split()[2]  # python -m stages.<name>
        stage_file = REPO / (module.replace(".", "/") + ".py")
        deps = {d for d in stage["deps"] if d.startswith("seglib/")}
        assert deps == import_closure(stage_file), name
        assert stage_file.relative_to(REPO).as_posix() in stage["deps"], name


def test_library_stays_out_of_file_locations():
    for path in (REPO / "seglib").glob("*.py"):
        text = path.read_text()
        assert '"data/' not in text and "'data/" not in text, path


def test_generator_reproduces_data_dvc_hash(tmp_path):
    """`python -m seglib synth` must recreate the tracked dataset byte for byte (fresh clones stay clean)."""
    expected = yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]
    dvc = str(Path(sys.executable).parent / "dvc")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True, env=env)
    subprocess.run([sys.executable, "-m", "seglib", "synth", "--out", tmp_path / "data"], cwd=REPO, check=True,
                   capture_output=True)
    subprocess.run([dvc, "add", "-q", "data"], cwd=tmp_path, check=True, env=env, capture_output=True)
    produced = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]
    assert (produced["md5"], produced["nfiles"], produced["size"]) == \
        (expected["md5"], expected["nfiles"], expected["size"])


def _seglib_graph():
    return {path.stem: {m.split(".")[1] for m in _imports(path)} for path in (REPO / "seglib").glob("*.py")}


def test_seglib_has_no_import_loops_and_never_imports_stages_or_bench():
    graph = _seglib_graph()

    def visit(module, trail):
        assert module not in trail, " -> ".join(trail + [module])
        for other in graph.get(module, ()):
            visit(other, trail + [module])
    for module in graph:
        visit(module, [])
    for path in (REPO / "seglib").glob("*.py"):
        assert not re.search(r"^\s*(from|import) (stages|bench)\b", path.read_text(), re.M), path


def test_no_function_in_seglib_takes_more_than_six_parameters():
    for path in (REPO / "seglib").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg not in ("self", "cls")]
                assert len(names) <= 6, f"{path.name}: {node.name}({', '.join(names)})"


def test_dvc_yaml_names_models_only_in_the_top_level_plots_and_those_match_params():
    """A third model is one models: entry plus its lines in the top-level plots; this test names what is missing."""
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    models = set(yaml.safe_load((REPO / "params.yaml").read_text())["models"])
    stages_text = yaml.safe_dump(pipeline["stages"])
    for name in models:
        assert not re.search(rf"\b{name}\b", stages_text), f"dvc.yaml's stages spell out {name}; use ${{key}}"
    for plot in pipeline["plots"]:
        (title, spec), = plot.items()
        named = {plotted_model(path) for path in spec["y"]}
        assert named == models, f"top-level plot {title!r} draws {sorted(named)}, models: has {sorted(models)}"


def plotted_model(path):
    """The model a top-level plot line draws: the epoch log's folder under plots/train/, or the file's stem."""
    parts = Path(path).parts
    return parts[2] if parts[:2] == ("plots", "train") else Path(path).stem


def test_readme_stays_a_guide():
    assert len((REPO / "README.md").read_bytes()) <= 15_000


def test_cross_validation_file_names_are_the_ones_dvc_yaml_writes():
    """A run's files are named in dvc.yaml (DVC needs them there) and read through seglib.crossval.run_files
    and bench.cv_progress's folders: the three must agree, or compare and cv_progress read nothing."""
    from bench.cv_progress import PER_IMAGE, TEST_METRICS
    from seglib.crossval import run_files
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    compare = stages["compare"]["cmd"].split()
    assert compare[compare.index("--test-metrics") + 1] == TEST_METRICS
    assert compare[compare.index("--per-image") + 1] == PER_IMAGE
    item = {"${item.model}": "m", "${item.fold}": "1", "${item.seed}": "2"}

    def filled(path):
        for key, value in item.items():
            path = path.replace(key, value)
        return path
    for stage, seed in (("cv-evaluate", "2"), ("cv-evaluate-extra", "2"), ("cv-ensemble", "ensemble")):
        outs = {filled(next(iter(o)) if isinstance(o, dict) else o) for o in stages[stage].get("outs", [])}
        metrics, rows = run_files(TEST_METRICS, PER_IMAGE, "m", 1, seed)
        assert {metrics.as_posix(), rows.as_posix()} <= outs, stage


def test_cv_progress_keeps_and_names_what_dvc_yaml_writes():
    """bench.cv_progress keeps a run's files and names its evaluate stage for --todo: each kept file must be
    an out or the --timing file of the run's stages, and each name the one DVC gives the matrix entry."""
    from bench.cv_progress import TRAIN_LOGS, evaluate_stage, run_kept_files
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    item = {"model": "m", "fold": "1", "subjects": "4", "seed": "2"}

    def filled(path):
        return re.sub(r"\$\{item\.(\w+)\}", lambda m: item[m.group(1)], path)
    for kind, part, subjects in (("cv", "cv", None), ("curve", "curve/n4", 4)):
        written = set()
        for stage in (f"{kind}-train", f"{kind}-evaluate"):
            cmd = stages[stage]["cmd"].split()
            outs = [next(iter(o)) if isinstance(o, dict) else o for o in stages[stage]["outs"]]
            written |= {filled(p) for p in [*outs, cmd[cmd.index("--timing") + 1]]}
        matrix = stages[f"{kind}-evaluate"]["matrix"]
        assert evaluate_stage("m", 1, 2, subjects) == f"{kind}-evaluate@" + "-".join(item[k] for k in matrix)
        assert {f.as_posix() for f in run_kept_files(part, "m-1-2")} | {f"{TRAIN_LOGS}/{part}/m-1-2"} <= written
