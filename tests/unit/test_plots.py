"""PNG plots for the workflow artifact: real matplotlib (Agg), opened back with Pillow."""

from __future__ import annotations

import io

import pytest
from PIL import Image  # matplotlib's own dependency

from modelops.ci.__main__ import main
from modelops.ci.plots import ARTIFACT, artifact_name, make_plots
from modelops.errors import InputError

CSVS = {
    "confusion.csv": "actual,predicted\n" + "".join(
        f"{a},{p}\n" for a in range(10) for p in [a, a, a, (a + 1) % 10]),
    "per_class.csv": "class,precision,recall,f1,support\n" + "".join(
        f"{c},0.9,0.8,{0.85 - c / 100:.4f},4\n" for c in range(10)),
    "train_curve.csv": "epoch,train_loss,val_loss,val_accuracy\n" + "".join(
        f"{e},{2 / e:.4f},{2.2 / e:.4f},{1 - 0.5 / e:.4f}\n" for e in range(1, 6)),
}
SIZES = {"confusion.png": (640, 560), "per_class.png": (800, 450), "train_curve.png": (800, 450)}


@pytest.fixture
def plots(tmp_path):
    folder = tmp_path / "plots"
    folder.mkdir()
    for name, text in CSVS.items():
        (folder / name).write_text(text)
    return folder


def test_writes_three_deterministic_pngs_of_fixed_size(plots, tmp_path):
    first = make_plots(plots, tmp_path / "a")
    assert sorted(p.name for p in first) == sorted(SIZES)
    for path in first:
        image = Image.open(path)
        assert image.format == "PNG" and image.size == SIZES[path.name]
        assert not {"Software", "Creation Time", "date:create"} & set(image.info)
        # something was drawn: many distinct colours, not a blank canvas
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50
    second = make_plots(plots, tmp_path / "b", names=("confusion",))
    assert second[0].read_bytes() == (tmp_path / "a" / "confusion.png").read_bytes()


def test_the_image_follows_the_data(plots, tmp_path):
    before = make_plots(plots, tmp_path / "a", names=("per_class",))[0].read_bytes()
    (plots / "per_class.csv").write_text(CSVS["per_class.csv"].replace("0.9,", "0.3,"))
    after = make_plots(plots, tmp_path / "b", names=("per_class",))[0].read_bytes()
    assert before != after
    assert Image.open(io.BytesIO(after)).size == SIZES["per_class.png"]


@pytest.mark.parametrize("name, text, message", [
    ("per_class.csv", None, "per_class.csv: plot data not found"),
    ("per_class.csv", "class,precision,recall,f1\n1,0.9,x0.8,0.8\n",
     "per_class.csv: line 2: column 'recall' 'x0.8' is not a number"),
    ("train_curve.csv", "epoch,train_loss,val_loss,val_accuracy\n1,0.5,nan,0.9\n",
     "train_curve.csv: line 2: column 'val_loss' 'nan' is not a number"),
    ("confusion.csv", "actual,prediction\n1,1\n", "confusion.csv: missing column 'predicted'"),
    ("confusion.csv", "actual,predicted\n", "confusion.csv: no data rows"),
    ("confusion.csv", b"\xff\xfe\x00garbage", "confusion.csv: cannot read it as utf-8 csv"),
])
def test_bad_csv_is_one_clear_error_and_nothing_is_written(plots, tmp_path, name, text, message):
    if text is None:
        (plots / name).unlink()
    elif isinstance(text, bytes):
        (plots / name).write_bytes(text)
    else:
        (plots / name).write_text(text)
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        make_plots(plots, out)
    assert message in str(err.value) and "dvc repro" in str(err.value)
    assert not out.exists()  # the good plots were not written either


def test_cli_writes_the_folder_and_exits_2_on_bad_input(plots, tmp_path, capsys):
    out = tmp_path / "reports" / "plots"
    assert main(["plots", "--plots", str(plots), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rendering confusion.png" in printed and ARTIFACT in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(SIZES)
    assert artifact_name(out) == ARTIFACT  # what the report names in Actions

    (plots / "confusion.csv").write_text("actual,predicted\n3\n")
    assert main(["plots", "--plots", str(plots), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "confusion.csv: line 2: column 'predicted' is empty" in err
    assert "Traceback" not in err and not (tmp_path / "x").exists()
    assert artifact_name(tmp_path / "x") is None


def test_comment_names_the_artifact_only_when_the_report_has_one():
    import json

    from modelops.ci.markdown import render_comment
    from tests.conftest import ROOT

    report = json.loads((ROOT / "tests/data/comment/report.json").read_text())
    assert report["context"]["plots_artifact"] == ARTIFACT
    line = f"PNG plots: attached as the workflow artifact `{ARTIFACT}`"
    assert line in render_comment(report)
    report["context"]["plots_artifact"] = None  # a local run: no artifact exists
    assert "PNG plots" not in render_comment(report)
