"""Which stages of ``dvc status --json`` the report calls stale (``ci.compare.stale_stages``).

The status below is what DVC printed for the example repository after CI's
``dvc repro --pull --allow-missing`` (outputs of unchanged stages left unfetched), with one
parameter changed, the card edited by hand and one stage's command changed (``compile`` as a
fresh runner finds it: outputs neither in the workspace nor in the cache).
"""

from __future__ import annotations

from modelops.ci.compare import stale_stages

STATUS = {
    "ingest": [{"changed outs": {"data/raw/digits.csv": "deleted"}}],
    "prepare": [{"changed deps": {"data/raw/digits.csv": "deleted"}}],
    "train": [{"changed outs": {"models/model.pt": "deleted"}}],
    "export": [{"changed deps": {"models/model.pt": "deleted"}}],
    "evaluate": [{"changed deps": {"params.yaml": {"evaluate.latency_runs": "modified"}}}],
    "card": [{"changed deps": {"data/raw/digits.csv": "deleted", "models/model.pt": "deleted",
                               "params.yaml": {"evaluate.latency_runs": "modified"}}},
             {"changed outs": {"model-cards/digits-cnn.md": "modified"}}],
    "figures": ["changed command"],
    "compile": [{"changed deps": {"data/prepared/train.npz": "deleted"}},
                {"changed outs": {"models/compiled": "not in cache"}}],
}


def test_outputs_only_missing_from_the_workspace_are_not_staleness():
    assert stale_stages(STATUS) == ["card", "evaluate", "figures"]


def test_after_ci_reproduce_nothing_is_stale():
    only_missing = {k: v for k, v in STATUS.items()
                    if k in ("ingest", "prepare", "train", "export", "compile")}
    assert stale_stages(only_missing) == []
    assert stale_stages({}) == []


def test_new_files_always_changed_and_unknown_shapes_are_stale():
    assert stale_stages({"a": [{"changed outs": {"x": "new"}}],
                         "b": ["always changed"],
                         "c": [{"changed deps": {"y": "not in cache"}}],  # outs only
                         "f": [{"changed deps": {"z": "deleted"}, "changed cmd": "x"}],
                         "d": [],
                         "e": "something else"}) == ["a", "b", "c", "d", "e", "f"]
    assert stale_stages(["not", "a", "mapping"]) == []
