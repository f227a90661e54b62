"""PNG plots for the workflow artifact: the repository's plot files as DVC reads them (its
``dvc.yaml`` definitions), drawn with real matplotlib (Agg) and opened back with Pillow."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image  # matplotlib's own dependency

from modelops.ci.__main__ import main
from modelops.ci.plots import (
    ARTIFACT,
    artifact_name,
    labels_on_y,
    make_plots,
    series,
    workspace_plots,
)
from modelops.errors import InputError

CSVS = {
    "plots/confusion.csv": "actual,predicted\n" + "".join(
        f"{a},{p}\n" for a in range(10) for p in [a, a, a, (a + 1) % 10]),
    "plots/per_class.csv": "class,precision,recall,f1,support\n" + "".join(
        f"{c},0.9,0.8,{0.85 - c / 100:.4f},4\n" for c in range(10)),
    "plots/train_curve.csv": "epoch,train_loss,val_loss,val_accuracy\n" + "".join(
        f"{e},{2 / e:.4f},{2.2 / e:.4f},{1 - 0.5 / e:.4f}\n" for e in range(1, 6)),
}
DVC_YAML = """\
stages:
  evaluate:
    cmd: python evaluate.py
    plots:
      - plots/confusion.csv:
          cache: false
      - plots/per_class.csv:
          cache: false
      - plots/train_curve.csv:
          cache: false
plots:
  - plots/confusion.csv: {template: confusion, x: actual, y: predicted}
  - plots/per_class.csv: {template: bar_horizontal, x: class, y: [precision, recall, f1]}
  - plots/train_curve.csv: {x: epoch, y: [train_loss, val_loss], title: Loss}
"""
SIZES = {"confusion.png": (640, 560), "per_class.png": (800, 450), "train_curve.png": (800, 450)}


def dvc_repo(root, dvc_yaml: str, files: dict[str, str | bytes]):
    from dvc.repo import Repo

    Repo.init(str(root), no_scm=True).close()
    (root / "dvc.yaml").write_text(dvc_yaml)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
    return root


@pytest.fixture
def repo(tmp_path):
    return dvc_repo(tmp_path / "repo", DVC_YAML, CSVS)


def test_writes_deterministic_pngs_of_fixed_size_per_definition(repo, tmp_path):
    plots = workspace_plots(repo)
    assert [(p.path, p.template) for p in plots] == [
        ("plots/confusion.csv", "confusion"), ("plots/per_class.csv", "bar_horizontal"),
        ("plots/train_curve.csv", "linear")]
    first = make_plots(plots, tmp_path / "a")
    assert sorted(p.name for p in first) == sorted(SIZES)
    for path in first:
        image = Image.open(path)
        assert image.format == "PNG" and image.size == SIZES[path.name]
        assert not {"Software", "Creation Time", "date:create"} & set(image.info)
        # something was drawn: many distinct colours, not a blank canvas
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50
    second = make_plots(workspace_plots(repo, ["plots/confusion.csv"]), tmp_path / "b")
    assert second[0].read_bytes() == (tmp_path / "a" / "confusion.png").read_bytes()


def test_the_image_follows_the_data(repo, tmp_path):
    files = ["plots/per_class.csv"]
    before = make_plots(workspace_plots(repo, files), tmp_path / "a")[0].read_bytes()
    (repo / files[0]).write_text(CSVS[files[0]].replace("0.9,", "0.3,"))
    after = make_plots(workspace_plots(repo, files), tmp_path / "b")[0].read_bytes()
    assert before != after
    assert Image.open(io.BytesIO(after)).size == SIZES["per_class.png"]


def test_other_shapes_json_rows_several_files_default_columns_and_images(tmp_path):
    """Plots defined the other ways dvc.yaml allows: one top-level plot over two JSON files
    (``y: {file: column}``), a TSV with no definition (x = row number, y = the last column),
    and an image plot, copied as it is."""
    png = io.BytesIO()
    Image.new("RGB", (4, 3), "red").save(png, format="PNG")
    rows = [{"step": i, "auc": 0.5 + i / 20} for i in range(5)]
    repo = dvc_repo(tmp_path / "r", """\
stages:
  train:
    cmd: python train.py
    plots: [logs/loss.tsv, figs/roc.png]
plots:
  - auc:
      x: step
      y: {logs/train.json: auc, logs/val.json: auc}
""", {"logs/train.json": json.dumps(rows), "logs/val.json": json.dumps(rows[:3]),
      "logs/loss.tsv": "loss\tlr\n0.9\t0.1\n0.5\t0.05\n", "figs/roc.png": png.getvalue()})
    plots = {p.path: p for p in workspace_plots(repo)}
    assert plots["logs/train.json"].props["y"] == "auc"
    assert plots["logs/loss.tsv"].props == {} and plots["figs/roc.png"].is_image
    written = make_plots(list(plots.values()), tmp_path / "out", root=repo)
    assert sorted(p.name for p in written) == ["loss.png", "roc.png", "train.png", "val.png"]
    assert (tmp_path / "out" / "roc.png").read_bytes() == png.getvalue()
    assert Image.open(tmp_path / "out" / "loss.png").size == SIZES["train_curve.png"]


@pytest.mark.parametrize("template", ["bar_horizontal", "bar_horizontal_sorted"])
def test_bar_horizontal_in_dvcs_own_shape_a_value_x_per_label_y(tmp_path, template):
    """DVC's bar_horizontal templates put the quantitative field on x and the nominal one on y
    (``x: importance, y: feature``): the labels are the y column, the bars the x values."""
    repo = dvc_repo(tmp_path / "r", f"""\
stages:
  fit:
    cmd: python fit.py
    plots: [plots/importance.csv]
plots:
  - plots/importance.csv: {{template: {template}, x: importance, y: feature}}
""", {"plots/importance.csv": "feature,importance\nmean radius,0.25\nworst area,0.5\n"
                              "texture,0.125\n"})
    [plot] = workspace_plots(repo)
    assert labels_on_y(plot)
    assert series(plot) == ("feature", ["mean radius", "worst area", "texture"],
                            {"importance": [0.25, 0.5, 0.125]})
    [png] = make_plots([plot], tmp_path / "out", root=repo)
    assert Image.open(png).size == SIZES["per_class.png"]
    # the bundled shape (a label x, value columns y) is not read this way
    assert not labels_on_y(workspace_plots(dvc_repo(tmp_path / "b", DVC_YAML, CSVS),
                                           ["plots/per_class.csv"])[0])


def _break(repo, name, text):
    if text is None:
        (repo / name).unlink()
    elif isinstance(text, bytes):
        (repo / name).write_bytes(text)
    else:
        (repo / name).write_text(text)


@pytest.mark.parametrize("name, text, message", [
    ("plots/per_class.csv", None, "plots/per_class.csv: plot data not readable"),
    ("plots/per_class.csv", "class,precision,recall,f1\n1,0.9,x0.8,0.8\n",
     "plots/per_class.csv: row 1: column 'recall' 'x0.8' is not a number"),
    ("plots/train_curve.csv", "epoch,train_loss,val_loss\n1,0.5,nan\n",
     "plots/train_curve.csv: row 1: column 'val_loss' 'nan' is not a number"),
    ("plots/confusion.csv", "actual,prediction\n1,1\n",
     "plots/confusion.csv: missing column 'predicted'"),
    ("plots/confusion.csv", "actual,predicted\n", "plots/confusion.csv: no data rows"),
])
def test_bad_data_is_one_clear_error_and_nothing_is_written(repo, tmp_path, name, text,
                                                              message):
    _break(repo, name, text)
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        make_plots(workspace_plots(repo), out)
    assert message in str(err.value) and "dvc repro" in str(err.value)
    assert not out.exists()  # the good plots were not written either


def test_cli_writes_the_folder_and_exits_2_on_bad_input(repo, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(repo)
    (repo / "params.yaml").write_text("modelops: {model: {name: m}}\n")
    out = tmp_path / "reports" / "plots"
    assert main(["plots", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rendering confusion.png from plots/confusion.csv" in printed and ARTIFACT in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(SIZES)
    assert artifact_name(out) == ARTIFACT  # what the report names in Actions
    assert main(["plots", "plots/train_curve.csv", "--out", str(tmp_path / "one")]) == 0
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["train_curve.png"]

    (repo / "plots/confusion.csv").write_text("actual,predicted\n3,\n")
    assert main(["plots", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "plots/confusion.csv: row 1: column 'predicted' is empty" in err
    assert "Traceback" not in err and not (tmp_path / "x").exists()
    assert artifact_name(tmp_path / "x") is None and artifact_name("") is None


def test_no_plots_at_all_renders_nothing(tmp_path, capsys, monkeypatch):
    repo = dvc_repo(tmp_path / "r", "stages: {}\n", {"params.yaml": "modelops: {model: "
                                                                    "{name: m}}\n"})
    with pytest.raises(InputError, match="no plot files"):
        make_plots(workspace_plots(repo), tmp_path / "out")
    monkeypatch.chdir(repo)
    assert main(["plots", "--out", str(tmp_path / "out")]) == 0
    assert "nothing to render" in capsys.readouterr().out and not (tmp_path / "out").exists()


def test_comment_names_the_artifact_only_when_the_report_has_one():
    from modelops.ci.markdown import render_comment
    from tests.conftest import ROOT

    report = json.loads((ROOT / "tests/data/comment/report.json").read_text())
    assert report["context"]["plots_artifact"] == ARTIFACT
    line = f"PNG plots of the base and the head: attached as the workflow artifact `{ARTIFACT}`"
    assert line in render_comment(report)
    report["context"]["plots_artifact"] = None  # a local run: no artifact exists
    assert "PNG plots" not in render_comment(report)
