"""bench.determinism's op trace: one pinned training step traced twice gives the same digests op by op,
and a changed op is named by --first-difference."""
import gzip

from conftest import run_module


def test_a_training_step_traces_the_same_twice_and_a_changed_op_is_named(tmp_path):
    traces = [tmp_path / "a.trace", tmp_path / "b.trace.gz"]
    for path in traces:
        result = run_module("bench.determinism", "--trace", path, "--size", 32, "--batch", 2)
        assert result.returncode == 0, result.stderr
    lines = traces[0].read_text().splitlines()
    with gzip.open(traces[1], "rt") as stream:
        assert stream.read().splitlines() == lines
    # forward, loss, backward and the optimiser's update of every parameter
    ops = [line.split()[0] for line in lines]
    assert ops[0] == "aten.convolution.default" and ops.count("aten.convolution_backward.default") == 19
    assert ops.count("aten.addcdiv_.default") == 56  # AdamW's update, once per parameter tensor

    same = run_module("bench.determinism", "--first-difference", *traces)
    assert same.returncode == 0 and f"all {len(lines)} ops equal" in same.stdout

    changed = lines.copy()
    name, shapes, digest = changed[5].split(" ")
    changed[5] = f"{name} {shapes} {'0' * len(digest)}"
    (tmp_path / "c.trace").write_text("\n".join(changed) + "\n")
    differs = run_module("bench.determinism", "--first-difference", traces[0], tmp_path / "c.trace")
    assert differs.returncode == 1
    assert "the first 5 ops equal; op 5 differs" in differs.stdout and name in differs.stdout

    (tmp_path / "d.trace").write_text("\n".join(lines[:-3]) + "\n")
    shorter = run_module("bench.determinism", "--first-difference", traces[0], tmp_path / "d.trace")
    assert shorter.returncode == 1 and f"equal for {len(lines) - 3} ops" in shorter.stdout
