"""Model card (Hugging Face metadata) and report.json (schema, merge_section)."""

from __future__ import annotations

import json
import shutil

import pytest

from modelops.ci.card import build_context, generate_card, render_card, validate_card
from modelops.ci.report import card_from_stage, card_section
from modelops.ci.reportfile import load_report, merge_section, validate_report, write_report
from modelops.errors import InputError, ValidationError
from modelops.fsutil import sha256_file
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "comment"

LOCK = """\
schema: '2.0'
stages:
  prepare:
    cmd: python -m pipeline.prepare
    deps:
    - path: data/raw/digits.csv
      hash: md5
      md5: 0123456789abcdef0123456789abcdef
      size: 1000
    params:
      params.yaml:
        prepare.seed: 42
    outs:
    - path: data/prepared
      hash: md5
      md5: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.dir
      size: 5000
  train:
    cmd: python -m pipeline.train
    params:
      params.yaml:
        train.epochs: 3
    outs:
    - path: models/model.onnx
      hash: md5
      md5: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
      size: 12
"""


PARAMS = """\
modelops:
  model:
    name: digits-cnn
    team: ml-platform
    metrics: [metrics/metrics.json]
    headline: {accuracy: higher, macro_f1: higher}
    artifact: {path: models/model.onnx}
    data: [data/raw/digits.csv, data/prepared]
    card:
      template: model-cards/templates/model-card.md.j2
      stage: card
      metadata: {license: apache-2.0, library_name: onnx, pipeline_tag: image-classification,
                 datasets: [sklearn-digits]}
  compile: {section_file: metrics/compile.json}
train: {epochs: 3}
"""


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "model-cards").mkdir()
    shutil.copytree(ROOT / "model-cards" / "templates", tmp_path / "model-cards" / "templates")
    (tmp_path / "params.yaml").write_text(PARAMS)
    (tmp_path / "dvc.lock").write_text(LOCK)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.onnx").write_bytes(b"onnx-bytes!!")
    metrics = {"accuracy": 0.981, "macro_f1": 0.9795, "model_size_mb": 0.1,
               "latency_p95_ms": 0.3,
               "per_class": {str(c): {"precision": 0.9, "recall": 0.95, "f1": 0.92,
                                      "support": 30} for c in range(10)}}
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "metrics.json").write_text(json.dumps(metrics))
    return tmp_path


def test_card_has_lineage_slices_and_loads_with_huggingface(repo, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name, text = generate_card(repo)
    assert name == "digits-cnn"
    from huggingface_hub import ModelCard

    card = ModelCard(text, ignore_metadata_errors=False)
    assert card.data.model_name == "digits-cnn"
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"accuracy": 0.981, "macro_f1": 0.9795}  # the headline metrics
    assert card.data.eval_results[0].dataset_type == "sklearn-digits"
    assert card.data.library_name == "onnx" and card.data.license == "apache-2.0"
    assert "## Intended use" in text and "## Limitations" in text
    assert "`aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.dir` | 5000 | prepare" in text   # data version
    assert "| train | `train.epochs` | `3` |" in text                        # parameters
    assert "| 9 | 0.9 | 0.95 | 0.92 | 30 |" in text                           # per-class slice
    assert sha256_file(repo / "models" / "model.onnx") in text               # lineage
    assert "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" in text


def test_card_is_deterministic(repo):
    assert generate_card(repo)[1] == generate_card(repo)[1]


def test_card_without_metrics_says_what_to_do(repo):
    (repo / "metrics" / "metrics.json").unlink()
    with pytest.raises(InputError, match=r"(?s)no metrics for the card \(metrics/metrics.json not "
                                         r"found\).*dvc repro"):
        generate_card(repo)


def test_broken_model_index_is_rejected():
    bad = "---\nmodel-index:\n  - name: x\n    results:\n      - task: {}\n---\n# x\n"
    with pytest.raises(ValidationError, match="front matter rejected"):
        validate_card(bad, "x")


def test_hostile_description_is_escaped(repo):
    (repo / "params.yaml").write_text(PARAMS.replace(
        "    team: ml-platform\n",
        "    description: '@octocat <script>[x](https://e.example)'\n"))
    ctx = build_context(repo)
    text = render_card(ctx, repo / "model-cards" / "templates" / "model-card.md.j2")
    assert "<script>" not in text and "@octocat" not in text and "](https" not in text


# --------------------------------------------------------------------------- report.json

def example():
    return json.loads((DATA / "report.json").read_text())


def test_example_report_validates():
    validate_report(example())


@pytest.mark.parametrize("mutate, where", [
    (lambda r: r["sections"]["compile"].pop("reason"), "sections.compile"),
    (lambda r: r["sections"]["evaluate"].update(status="ok"), "sections.evaluate.status"),
    (lambda r: r.update(schema_version=2), "schema_version"),
    (lambda r: r["sections"]["evaluate"]["gates"][0].update(status="maybe"),
     "sections.evaluate.gates.0.status"),
])
def test_schema_rejects_bad_reports(mutate, where):
    report = example()
    mutate(report)
    with pytest.raises(ValidationError, match=rf"report: {where}"):
        validate_report(report)


def test_merge_section_adds_compile_and_recomputes_verdict(tmp_path):
    path = tmp_path / "reports" / "report.json"
    report = example()
    report["sections"]["evaluate"]["status"] = "pass"
    write_report(path, report)
    assert load_report(path)["verdict"] == "pass"
    merged = merge_section(path, "compile", {"status": "fail", "backend": "onnxruntime",
                                             "summary": "parity failed"})
    assert merged["verdict"] == "fail"
    again = load_report(path)
    assert again["sections"]["compile"]["backend"] == "onnxruntime"
    assert list(again["sections"]) == ["evaluate", "compile", "card"]
    merge_section(path, "canary_preview", {"status": "skipped", "reason": "no cluster"})
    assert "canary_preview" in load_report(path)["sections"]


def test_merge_section_rejects_bad_section_and_leaves_file_whole(tmp_path):
    path = tmp_path / "report.json"
    write_report(path, example())
    before = path.read_bytes()
    with pytest.raises(ValidationError, match="sections.compile"):
        merge_section(path, "compile", {"status": "skipped"})  # no reason
    with pytest.raises(InputError, match="not a simple word"):
        merge_section(path, "../x", {"status": "pass"})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_load_report_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="report not found"):
        load_report(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InputError, match="bad.json: not valid JSON"):
        load_report(bad)


def test_confusion_from_dvc_plot_rows():
    from modelops.ci.report import confusion

    labels, matrix = confusion("actual,predicted\n1,1\n0,0\n1,0\n10,1\n")
    assert labels == ["0", "1", "10"]
    assert matrix == [[1, 0, 0], [1, 1, 0], [0, 1, 0]]
    assert confusion("a,b\n1,1\n") is None
    assert confusion("") is None


def test_section_file_is_picked_up_only_when_valid_and_current(repo):
    from modelops.ci.report import section_from_file

    onnx_sha = sha256_file(repo / "models" / "model.onnx")
    path = repo / "metrics" / "compile.json"
    section = {"status": "pass", "summary": "ok",
               "model": {"path": "models/model.onnx", "sha256": onnx_sha}}
    path.write_text(json.dumps(section))
    assert section_from_file(repo, "compile", None) == section
    section["model"]["sha256"] = "0" * 64
    path.write_text(json.dumps(section))
    stale = section_from_file(repo, "compile", None)
    assert stale["status"] == "skipped" and "rerun dvc repro" in stale["reason"]
    path.write_text(json.dumps({"status": "done"}))
    assert section_from_file(repo, "compile", None) is None
    path.unlink()
    assert section_from_file(repo, "compile", None) is None


def test_github_context_from_a_real_pull_request_payload(tmp_path):
    from modelops.ci.report import default_base, github_context

    event_path = ROOT / "tests" / "data" / "github" / "webhooks" / "pull_request.opened.json"
    event = json.loads(event_path.read_text())["pull_request"]
    env = {"GITHUB_EVENT_PATH": str(event_path), "GITHUB_SERVER_URL": "https://github.com",
           "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "5", "GITHUB_BASE_REF": "main"}
    for name in ("confusion", "per_class", "train_curve"):  # what `modelops-ci plots` writes
        (tmp_path / f"{name}.png").write_bytes(b"png")
    ctx = github_context(env, tmp_path)
    assert ctx["pr_number"] == event["number"] and ctx["pr_title"] == event["title"]
    assert ctx["head_ref"] == event["head"]["ref"] and ctx["base_ref"] == event["base"]["ref"]
    assert ctx["run_url"] == "https://github.com/o/r/actions/runs/5"
    assert ctx["plots_artifact"] == "model-plots"  # the evaluate job uploads the folder
    for png in tmp_path.glob("*.png"):  # no plots made: no artifact is claimed
        png.unlink()
    assert github_context(env, tmp_path)["plots_artifact"] is None
    assert github_context(env, "")["plots_artifact"] is None  # none attached
    assert default_base(env) == "origin/main"
    assert default_base({}) == "HEAD"
    assert github_context({})["run_url"] is None
    assert github_context({}, tmp_path)["plots_artifact"] is None  # not in Actions


def test_gate_from_report_fails_on_any_failed_section(tmp_path, capsys):
    from modelops.ci.__main__ import main

    path = tmp_path / "report.json"
    report = example()
    report["sections"]["evaluate"]["status"] = "pass"
    for g in report["sections"]["evaluate"]["gates"]:
        g["status"] = "pass"
    write_report(path, report)
    assert main(["gate", "--report", str(path)]) == 0
    merge_section(path, "compile", {"status": "fail", "summary": "parity: top-1 0.91 < 0.99"})
    assert main(["gate", "--report", str(path)]) == 1
    out = capsys.readouterr().out
    assert "section compile: fail: parity: top-1 0.91 < 0.99" in out
    assert "gate verdict: fail" in out


CARD_DVC_YAML = """\
stages:
  train:
    cmd: python -m pipeline.train
    outs: [models/model.onnx]
  card:
    cmd: modelops-ci card
    deps: [models/model.onnx]
    params: [model]
    outs:
      - model-cards/digits-cnn.md:
          cache: false
"""


def test_an_up_to_date_card_stage_file_stands_in_for_generating_the_card(repo):
    from modelops.settings import load_settings

    (repo / "dvc.yaml").write_text(CARD_DVC_YAML)
    settings = load_settings(repo / "params.yaml")
    _, generated = generate_card(repo)
    card = repo / "model-cards" / "digits-cnn.md"
    card.write_text("the card stage's file\n")
    assert card_from_stage(repo, settings, [], "params.yaml") == "the card stage's file\n"
    section = card_section(repo, "HEAD", "params.yaml", stale=[])
    assert "+the card stage's file" in section["diff"]
    # anything DVC does not vouch for is generated again
    assert card_from_stage(repo, settings, ["card"], "params.yaml") is None
    assert card_from_stage(repo, settings, ["train"], "params.yaml") is None
    assert card_from_stage(repo, settings, None, "params.yaml") is None
    assert card_from_stage(repo, settings, [], "other-params.yaml") is None
    section = card_section(repo, "HEAD", "params.yaml", stale=["card"])
    assert "+the card stage's file" not in section["diff"]
    assert section["diff"].count("\n+") == generated.count("\n") + 1  # all of it is new
    card.unlink()
    assert card_from_stage(repo, settings, [], "params.yaml") is None
    (repo / "dvc.yaml").write_text(CARD_DVC_YAML.split("  card:")[0])
    card.write_text("no card stage: not trusted\n")
    assert card_from_stage(repo, settings, [], "params.yaml") is None


# --------------------------------------------------------------------------- another shape

BARE = """\
modelops:
  model:
    name: churn-model
    metrics: [eval/metrics.json, eval/extra.json]
    headline: {auc: higher}
"""


def test_a_repository_without_template_onnx_or_slices_gets_the_builtin_card(tmp_path):
    """No card template, no ONNX artifact, no per-class slices, no metadata: the built-in
    template renders a card huggingface_hub accepts, with only what the metrics have."""
    from huggingface_hub import ModelCard

    (tmp_path / "params.yaml").write_text(BARE)
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text('{"auc": 0.91, "loss": 0.3}')
    (tmp_path / "eval" / "extra.json").write_text('{"rows": 100}')
    name, text = generate_card(tmp_path)
    assert name == "churn-model"
    card = ModelCard(text, ignore_metadata_errors=False)
    assert card.data.tags == ["modelops-suite"] and "model-index" not in card.data.to_dict()
    assert "| auc | 0.91 | higher |" in text and "loss" not in text  # the headline only
    assert "Per-class" not in text
    assert "| Deployable artifact | none (no ONNX model) |" in text
    assert "`eval/metrics.json`, `eval/extra.json`" in text
    assert "modelops.model.card.template" in text  # says how to describe the model properly


def test_card_step_off_is_skipped_with_the_reason(tmp_path):
    (tmp_path / "params.yaml").write_text(BARE + "  steps: {card: false}\n")
    section = card_section(tmp_path, "HEAD", "params.yaml")
    assert section == {"status": "skipped",
                       "reason": "turned off (modelops.steps.card: false)"}


def test_a_missing_configured_template_is_one_clear_error(repo):
    (repo / "model-cards" / "templates" / "model-card.md.j2").unlink()
    with pytest.raises(InputError, match="(?s)model card template not found.*built-in"):
        generate_card(repo)


def test_model_index_comes_from_the_headline_not_from_metadata(tmp_path):
    from modelops.errors import ConfigError
    from modelops.settings import parse_settings

    with pytest.raises(ConfigError, match=r"modelops.model.card.metadata.model-index: is "
                                          r"written by the suite"):
        parse_settings({"modelops": {"model": {"name": "m", "card": {
            "metadata": {"model-index": []}}}}})
