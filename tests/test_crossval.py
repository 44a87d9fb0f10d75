"""Cross-validation by split unit: the fold assignment and its settings."""
import json
import random

import pytest

from seglib import config
from seglib.errors import SegError
from seglib.split import assign_parts, cross_validation_folds
from test_bad_input import project, split  # noqa: F401 (fixture)


def _dataset(subjects=10, slices=3, rare=()):
    """image -> unit (copies: S0 and S1 are one unit), image -> gray values (rare subjects hold 128)."""
    units, grays, pairs = {}, {}, []
    for s in range(subjects):
        for k in range(slices):
            image = f"S{s}_{k}.png"
            units[image] = "S0+S1" if s in (0, 1) else f"S{s}"
            grays[image] = {0, 255} | ({128} if s in rare else set())
            pairs.append([image, image])
    return units, grays, pairs


def _folds(k=5, seed=42, **kwargs):
    units, grays, pairs = _dataset(**kwargs)
    parts = assign_parts(units, grays, 0, k, seed)
    return units, parts, cross_validation_folds(pairs, units, parts, k)


def test_every_unit_is_tested_once_and_plays_one_role_per_fold():
    units, parts, folds = _folds(k=3)
    all_units = set(units.values())
    tested = [units[image] for fold in folds for image, _ in fold["test"]]
    assert sorted(set(tested)) == sorted(all_units)
    assert all(sum(units[i] == u for fold in folds for i, _ in fold["test"]) == 3 for u in all_units - {"S0+S1"})
    for i, fold in enumerate(folds):
        roles = {part: {units[image] for image, _ in fold[part]} for part in fold}
        assert not (roles["train"] & roles["val"] or roles["train"] & roles["test"] or roles["val"] & roles["test"])
        assert roles["train"] | roles["val"] | roles["test"] == all_units
        assert roles["test"] == {u for u, p in parts.items() if p == i}
        assert roles["val"] == {u for u, p in parts.items() if p == (i + 1) % 3}
    # each unit validates exactly one fold too
    assert sorted(units[i] for fold in folds for i, _ in fold["val"]) == sorted(tested)


def test_copies_stay_together_and_parts_are_balanced():
    units, parts, folds = _folds(k=4, subjects=11)
    assert "S0+S1" in parts and not any(u in parts for u in ("S0", "S1"))
    sizes = [list(parts.values()).count(i) for i in range(4)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 10


def test_assignment_is_seeded_and_independent_of_file_order():
    units, grays, _ = _dataset()
    first = assign_parts(units, grays, 0, 5, 42)
    items = list(units.items())
    random.Random(1).shuffle(items)
    assert assign_parts(dict(items), grays, 0, 5, 42) == first
    assert assign_parts(units, grays, 0, 5, 43) != first


def test_subjects_holding_a_rare_class_are_spread_over_the_parts():
    units, grays, _ = _dataset(subjects=12, rare=(3, 7, 8))
    for seed in range(20):
        parts = assign_parts(units, grays, 0, 3, seed)
        assert sorted(parts[f"S{s}"] for s in (3, 7, 8)) == [0, 1, 2], seed


@pytest.mark.parametrize("raw, message", [
    ({"folds": [0, 1]}, "crossval.folds: 2 fold(s) cannot give each fold its own test, validation and training"),
    ({"folds": [1, 2, 3]}, "crossval.folds: expected [] (hold-out only) or the fold numbers 0 to k-1 in order"),
    ({"folds": [0, 1, 1.5]}, "crossval.folds: expected []"),
    ({"seeds": [0, 0]}, "crossval.seeds: [0, 0] repeats a seed"),
    ({"seeds": []}, "crossval.seeds: expected a list of whole-number training seeds"),
])
def test_wrong_crossval_settings_name_the_key(raw, message):
    with pytest.raises(SegError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        config.build_section(config.CrossValConfig, raw, "crossval")


def test_split_stage_writes_the_folds_and_refuses_more_folds_than_subjects(project):  # noqa: F811
    result = split(project, crossval={"folds": [0, 1, 2]})
    assert result.returncode == 0, result.stderr
    assert "cross-validation: 3 folds of [2, 2, 2] split units" in result.stdout
    folds = json.loads((project / "out/folds.json").read_text())
    assert folds["k"] == 3 and len(folds["folds"]) == 3
    assert sorted(i for f in folds["folds"] for i, _ in f["test"]) == sorted(folds["units"])
    result = split(project, crossval={"folds": list(range(7))})
    assert result.returncode == 2
    assert "crossval.folds: 7 folds need at least 7 split units (subjects), the data has 6" in result.stderr


def test_hold_out_writes_an_empty_fold_list(project):  # noqa: F811
    assert split(project).returncode == 0
    folds = json.loads((project / "out/folds.json").read_text())
    assert folds["k"] == 0 and folds["folds"] == []
