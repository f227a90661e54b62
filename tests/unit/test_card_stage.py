"""The model card as a DVC stage: it shows exactly what the ``card`` stage declares."""

from __future__ import annotations

import re

from modelops.ci.card import card_inputs, generate_card
from modelops.yamlio import load_yaml_file
from tests.conftest import ROOT
from tests.unit.test_card import repo  # noqa: F401 - fixture

DVC_YAML = """\
stages:
  prepare:
    cmd: python -m pipeline.prepare
    deps: [data/raw/digits.csv]
    params: [prepare]
    outs: [data/prepared]
  train:
    cmd: python -m pipeline.train
    deps: [data/prepared/train.npz]
    params: [train]
    outs: [models/model.onnx]
  compile:
    cmd: modelops-ci compile
    deps: [models/model.onnx]
    outs: [models/compiled]
  card:
    cmd: modelops-ci card
    deps: [ci/card.py, models/model.onnx]
    params: [model, train.epochs]
    outs:
      - model-cards/digits-cnn.md:
          cache: false
"""

LOCK_EXTRA = """\
    - path: plots/train_curve.csv
      hash: md5
      md5: cccccccccccccccccccccccccccccccc
      size: 10
  compile:
    cmd: modelops-ci compile
    params:
      params.yaml:
        compile.precision: fp16
    outs:
    - path: models/compiled
      hash: md5
      md5: dddddddddddddddddddddddddddddddd.dir
      size: 99
"""


def test_upstream_stages_come_from_the_card_deps(repo):  # noqa: F811
    (repo / "dvc.yaml").write_text(DVC_YAML)
    assert card_inputs(repo) is None  # no stage named: the card is rendered by CI only
    inputs = card_inputs(repo, "card")
    # train makes model.onnx; prepare makes data/prepared, a folder holding train's input
    assert inputs.stages == {"train", "prepare"}
    assert inputs.deps == {"ci/card.py", "models/model.onnx"}
    assert inputs.shows_param("train.epochs") and inputs.shows_param("model.name")
    assert not inputs.shows_param("train.epochs_x") and not inputs.shows_param("prepare.seed")


def test_card_shows_only_declared_inputs(repo):  # noqa: F811
    (repo / "dvc.lock").write_text((repo / "dvc.lock").read_text() + LOCK_EXTRA)
    everything = generate_card(repo)[1]
    assert "cccccccccccccccccccccccccccccccc" in everything and "compile" in everything

    (repo / "dvc.yaml").write_text(DVC_YAML)
    text = generate_card(repo)[1]
    assert "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" in text            # model.onnx: a dep
    assert "| train | `train.epochs` | `3` |" in text           # a declared param
    assert "cccccccccccccccccccccccccccccccc" not in text        # not a dep of the card
    assert "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" not in text        # data/prepared: not a dep
    assert "prepare.seed" not in text                            # param not declared
    assert "compile" not in text.split("## Lineage")[1]          # a sibling, not upstream


def test_card_has_no_commit_sha(repo):  # noqa: F811
    """A commit in the card would change it on every commit (noise in every PR diff)."""
    text = generate_card(repo)[1]
    assert not re.search(r"\b[0-9a-f]{40}\b", text)


def test_committed_card_shows_only_what_the_stage_declares():
    """Every md5 in the committed card is one that the card stage depends on (so it reruns)."""
    lock = load_yaml_file(ROOT / "dvc.lock")["stages"]
    card = (ROOT / "model-cards" / "digits-cnn.md").read_text()
    dep_md5 = {d["md5"] for d in lock["card"]["deps"]}
    shown = set(re.findall(r"`([0-9a-f]{32}(?:\.dir)?)`", card))
    assert shown and shown <= dep_md5, shown - dep_md5
    declared = load_yaml_file(ROOT / "dvc.yaml")["stages"]["card"]["params"]
    for key in re.findall(r"\| `([a-z_]+\.[a-z_.]+)` \|", card):
        assert any(key == p or key.startswith(p + ".") for p in declared), key
