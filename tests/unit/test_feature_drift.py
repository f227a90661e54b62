"""The drift baseline's features section, the bins and the PSI per feature, and the sliding
window the serving runtime keeps (modelops.drift, modelops.binning)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelops.binning import PSI_EPSILON, Binner, SlidingBins, psi
from modelops.drift import feature_problems, load_features, parse_features
from modelops.errors import InputError


def section(**over):
    base = {"names": ["a", "b", "c"], "min": [0.0, 0.0, 0.0], "max": [10.0, 1.0, 2.0],
            "quantile_edges": [[2.0, 5.0], [0.5], [0.0]],
            "bin_distribution": [[0.3, 0.3, 0.4], [0.5, 0.5], [0.0, 1.0]],
            "categories": [None, None, [0, 1, 2]]}
    base["bin_distribution"][2] = [0.2, 0.3, 0.5, 0.0]  # c is categorical: 3 codes + other
    base.update(over)
    return base


def test_a_sound_section_parses():
    f = parse_features(section())
    assert f.names == ("a", "b", "c") and f.count == 3 and f.binned
    assert f.edges[2] is None and f.categories[2] == (0.0, 1.0, 2.0)
    assert [f.bins(j) for j in range(3)] == [3, 2, 4]


@pytest.mark.parametrize(("over", "path", "words"), [
    ({"names": ["a", "a", "c"]}, "features.names", "must be unique"),
    ({"min": [0.0, 0.0]}, "features.min", "one entry per feature (3"),
    ({"max": [10.0, 1.0, "x"]}, "features.max", "finite numbers"),
    ({"quantile_edges": [[5.0, 2.0], [0.5], [0.0]]}, "features.quantile_edges[0]",
     "strictly increasing"),
    ({"bin_distribution": [[0.3, 0.7], [0.5, 0.5], [0.2, 0.3, 0.5, 0.0]]},
     "features.bin_distribution[0]", "must have 3"),
    ({"bin_distribution": [[0.3, 0.3, 0.3], [0.5, 0.5], [0.2, 0.3, 0.5, 0.0]]},
     "features.bin_distribution[0]", "must sum to 1"),
    ({"categories": [None, None, [1, 1]]}, "features.categories[2]", "distinct"),
    ({"missing_value": "none"}, "features.missing_value", "a number or"),
    ({"colour": 1}, "features.colour", "unknown key"),
    ({"min": [3.0, 0.0, 0.0], "max": [1.0, 1.0, 2.0]}, "features.min[0]", "above"),
    ({"columns": ["p0", "p0", "p1"]}, "features.columns", "must be unique"),
    ({"scale": [1.0, 0.0, 1.0]}, "features.scale", "must not be 0"),
    ({"offset": [1.0, 0.0]}, "features.offset", "one entry per feature"),
])
def test_a_bad_section_names_the_field_and_the_value(over, path, words):
    problems = feature_problems(section(**over))
    assert problems and problems[0][0] == path and words in problems[0][2], problems
    with pytest.raises(InputError) as info:
        parse_features(section(**over), "eval/drift_baseline.json")
    assert str(info.value).startswith(f"eval/drift_baseline.json: {path}: ")
    assert "dvc repro" in str(info.value)


def test_a_baseline_without_features_or_bins(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"class_distribution": [0.5, 0.5]}))
    assert load_features(path) is None
    path.write_text(json.dumps({"features": {"min": [0, 1], "max": [1, 2]}}))
    f = load_features(path)
    assert not f.binned and f.names == ("x[0]", "x[1]")
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="a drift baseline is a JSON object"):
        load_features(path)


def test_bins_follow_numpy_digitize_and_categories():
    b = Binner(parse_features(section()))
    rows = np.array([[1.9, 0.5, 1], [2.0, 0.49, 2], [5.0, 7.0, 9], [-1.0, 0.0, 0]])
    bins = b.bin(rows)
    assert bins[:, 0].tolist() == np.digitize(rows[:, 0], [2.0, 5.0]).tolist() == [0, 1, 2, 0]
    assert bins[:, 1].tolist() == [1, 0, 1, 0]
    assert bins[:, 2].tolist() == [1, 2, 3, 0]  # 9 is no code: the last bin
    missing, nonfinite, out = b.quality(rows)
    assert out.tolist() == [[False] * 3, [False] * 3, [False, True, True], [True, False, False]]
    assert not missing.any() and not nonfinite.any()


def test_missing_markers_and_nonfinite_values_are_left_out_of_the_bins():
    b = Binner(parse_features(section(missing_value="NaN")))
    rows = np.array([[np.nan, np.inf, 1.0], [3.0, 0.2, -np.inf]])
    missing, nonfinite, out = b.quality(rows)
    assert missing.tolist() == [[True, False, False], [False, False, False]]
    assert nonfinite.tolist() == [[False, True, False], [False, False, True]]
    assert not out.any()  # neither missing nor non-finite values are "out of range"
    bins = b.bin(rows, missing | nonfinite)
    assert bins[0, 0] == bins[0, 1] == bins[1, 2] == b.IGNORED
    counts = b.counts(bins)
    assert counts[:, b.IGNORED].tolist() == [1, 1, 1]
    sentinel = Binner(parse_features(section(missing_value=-1)))
    missing, nonfinite, _ = sentinel.quality(np.array([[-1.0, np.nan, 0.0]]))
    assert missing.tolist() == [[True, False, False]]
    assert nonfinite.tolist() == [[False, True, False]]


def test_psi_is_the_textbook_formula_with_floored_shares():
    expected = np.array([[0.5, 0.5, 0.0]])
    counts = np.array([[30, 70, 0]])
    want = (0.3 - 0.5) * math.log(0.3 / 0.5) + (0.7 - 0.5) * math.log(0.7 / 0.5)
    assert psi(expected, counts)[0] == pytest.approx(want)
    one_empty = psi(np.array([[0.5, 0.5]]), np.array([[10, 0]]))[0]
    assert one_empty == pytest.approx((1 - 0.5) * math.log(1 / 0.5)
                                      + (PSI_EPSILON - 0.5) * math.log(PSI_EPSILON / 0.5))
    assert math.isnan(psi(expected, np.zeros((1, 3)))[0])
    assert psi(np.array([[0.2, 0.8]]), np.array([[20, 80]]))[0] == pytest.approx(0.0)


@settings(max_examples=60, deadline=None)
@given(window=st.integers(1, 40), chunks=st.lists(st.integers(0, 60), min_size=1,
                                                  max_size=8), seed=st.integers(0, 99))
def test_the_sliding_window_counts_exactly_the_last_rows(window, chunks, seed):
    b = Binner(parse_features(section()))
    rng = np.random.default_rng(seed)
    w = SlidingBins(b, window, 1)
    seen = []
    for n in chunks:
        rows = np.column_stack([rng.uniform(-1, 11, n), rng.uniform(0, 1, n),
                                rng.integers(0, 4, n)]).astype(np.float64)
        bins = b.bin(rows)
        w.add(bins)
        seen.extend(bins.tolist())
        last = np.array(seen[-window:], dtype=np.int16).reshape(-1, 3)
        want = b.counts(last)
        np.testing.assert_array_equal(w.counts[:, :b.IGNORED], want[:, :b.IGNORED])
        np.testing.assert_array_equal(w.samples(), (last != b.IGNORED).sum(axis=0))


def test_the_window_says_no_evidence_until_min_samples():
    b = Binner(parse_features(section()))
    w = SlidingBins(b, 10, 4)
    w.add(b.bin(np.array([[1.0, 0.1, 0]] * 3)))
    assert np.isnan(w.psi()).all()
    w.add(b.bin(np.array([[1.0, 0.1, 0]])))
    assert np.isfinite(w.psi()).all()


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 12), marker=st.sampled_from(
    [None, "NaN", -1.0, 5.0]), dtype=st.sampled_from([np.float64, np.float32]),
    specials=st.lists(st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 5.0, 10.5, -0.5, 1e39]),
                      max_size=3))
def test_clean_says_true_only_when_quality_finds_nothing(seed, n, marker, dtype, specials):
    """The cheap min/max check never hides a problem the masks would show, on numeric
    features, whatever the marker, dtype and special values."""
    numeric = {"names": ["a", "b"], "min": [0.0, 0.0], "max": [10.0, 1.0],
               "quantile_edges": [[2.0, 5.0], [0.5]],
               "bin_distribution": [[0.3, 0.3, 0.4], [0.5, 0.5]]}
    if marker is not None:
        numeric["missing_value"] = marker
    b = Binner(parse_features(numeric))
    rng = np.random.default_rng(seed)
    rows = np.column_stack([rng.uniform(0, 10, n), rng.uniform(0, 1, n)])
    for k, value in enumerate(specials):
        if n:
            with np.errstate(over="ignore"):
                rows[rng.integers(0, n), k % 2] = value
    with np.errstate(over="ignore"):
        rows = rows.astype(dtype)
    missing, nonfinite, out = b.quality(rows)
    found = missing.any() or nonfinite.any() or out.any()
    if b.clean(rows):
        assert not found
    if not specials and marker != 5.0:
        # finite, in range, no marker within a column's span: the fast answer is yes
        assert not found and b.clean(rows)


def test_clean_looks_closer_at_categories_and_takes_empty_rows():
    b = Binner(parse_features(section()))
    assert b.clean(np.empty((0, 3)))
    assert not b.clean(np.array([[1.0, 0.1, 1.0]]))  # c is categorical: always the masks
