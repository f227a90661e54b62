"""The model card: ``model-cards/<model>.md`` from ``model-cards/templates/model-card.md.j2``.

Inputs: ``params.yaml`` (model name, description, team), ``dvc.lock`` (data hashes, parameters
and outputs of every stage), ``metrics/metrics.json`` (headline metrics and per-class slices),
``models/model.onnx`` (sha256). The YAML front matter follows the Hugging Face model card
metadata (``model-index`` with results), written through :mod:`modelops.yamlio` and checked by
loading
the card with ``huggingface_hub.ModelCard`` before anything is written.

The ``card`` stage of ``dvc.yaml`` writes the card, so it is a pure function of what that stage
declares: when ``dvc.yaml`` has a ``card`` stage, the card shows only the stages upstream of it
and, of their hashes and parameters, only the ones the stage lists as ``deps`` and ``params``.
A change to anything the card shows therefore reruns the stage, and nothing else can change it:
no timestamp, no git commit (the commit that holds the card cannot be known before it is made,
and the commit the stage ran at changes on every commit without the model changing). The same
inputs give the same bytes, and a PR diff shows only real changes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from modelops.errors import InputError, ValidationError

TEMPLATE_DIR = Path("model-cards") / "templates"
TEMPLATE = "model-card.md.j2"
METRICS_FILE = "metrics/metrics.json"
ONNX_FILE = "models/model.onnx"
CARD_METRICS = ("accuracy", "macro_f1", "model_size_mb", "latency_p50_ms", "latency_p95_ms",
                "latency_batch32_p50_ms", "latency_batch32_p95_ms")


def card_path(model: str, root: str | Path = ".") -> Path:
    return Path(root) / "model-cards" / f"{model}.md"


CARD_STAGE = "card"


@dataclass(frozen=True)
class CardInputs:
    """What the ``card`` stage of ``dvc.yaml`` declares: the card shows nothing else."""

    stages: frozenset[str]  # the stages upstream of the card stage
    deps: frozenset[str]    # paths whose DVC hashes the card may show
    params: tuple[str, ...]  # params.yaml keys (sections or dotted keys) it may show

    def shows_path(self, path: str) -> bool:
        return path in self.deps

    def shows_param(self, key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in self.params)


def _paths(entries: Any) -> list[str]:
    """Paths of a dvc.yaml ``deps``/``outs``/``metrics``/``plots`` list (str or {path: opts})."""
    paths = []
    for entry in entries or []:
        paths.extend([entry] if isinstance(entry, str) else list(entry or {}))
    return [str(p) for p in paths]


def _params(entries: Any) -> list[str]:
    keys = []
    for entry in entries or []:
        if isinstance(entry, str):
            keys.append(entry)
        elif isinstance(entry, dict):  # {params.yaml: [keys]} (other files are not shown)
            for values in entry.values():
                keys.extend(str(v) for v in values or [])
    return keys


def card_inputs(root: str | Path = ".") -> CardInputs | None:
    """The ``card`` stage's inputs from ``dvc.yaml``; ``None`` when there is no such stage."""
    from modelops.yamlio import load_yaml_file

    path = Path(root) / "dvc.yaml"
    if not path.is_file():
        return None
    stages = (load_yaml_file(path) or {}).get("stages") or {}
    card = stages.get(CARD_STAGE)
    if not isinstance(card, dict):
        return None
    owner = {}
    for name, stage in stages.items():
        if name != CARD_STAGE and isinstance(stage, dict):
            for out in _paths(stage.get("outs")) + _paths(stage.get("metrics")) \
                    + _paths(stage.get("plots")):
                owner[out.rstrip("/")] = name

    def producer(dep: str) -> str | None:
        return next((s for out, s in owner.items()
                     if dep == out or dep.startswith(out + "/")), None)

    upstream: set[str] = set()
    todo = _paths(card.get("deps"))
    while todo:
        stage = producer(todo.pop())
        if stage is not None and stage not in upstream:
            upstream.add(stage)
            todo.extend(_paths(stages[stage].get("deps")))
    return CardInputs(frozenset(upstream), frozenset(p.rstrip("/") for p in
                                                     _paths(card.get("deps"))),
                      tuple(_params(card.get("params"))))


def _value(v: Any) -> Any:
    return round(v, 6) if isinstance(v, float) else v


def front_matter(model: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """Hugging Face model card metadata with a ``model-index`` of the headline results."""
    results = []
    if isinstance(metrics.get("accuracy"), (int, float)):
        results.append({"type": "accuracy", "value": _value(metrics["accuracy"]),
                        "name": "Accuracy"})
    if isinstance(metrics.get("macro_f1"), (int, float)):
        results.append({"type": "f1", "value": _value(metrics["macro_f1"]), "name": "Macro F1",
                        "args": {"average": "macro"}})
    data: dict[str, Any] = {
        "license": "apache-2.0",
        "library_name": "onnx",
        "pipeline_tag": "image-classification",
        "tags": ["onnx", "image-classification", "digits", "modelops-suite"],
        "metrics": ["accuracy", "f1"],
    }
    if results:
        data["model-index"] = [{
            "name": model["name"],
            "results": [{
                "task": {"type": "image-classification", "name": "Image Classification"},
                "dataset": {"name": "scikit-learn digits (8x8)", "type": "sklearn-digits",
                            "split": "test"},
                "metrics": results,
            }],
        }]
    return data


def _stage_data(lock: dict[str, Any], inputs: CardInputs | None = None,
                ) -> tuple[list[dict], list[dict], list[dict]]:
    from modelops.ci.compare import flatten

    data, params, lineage = [], [], []
    for stage, entry in lock.items():
        if inputs is not None and stage not in inputs.stages:
            continue  # the card stage itself, and stages beside it (compile)
        entry = entry or {}
        for dep in entry.get("deps") or []:
            if str(dep.get("path", "")).startswith("data/") and not any(
                    d["path"] == dep["path"] for d in data):
                data.append({"path": dep["path"], "md5": dep.get("md5"),
                             "size": dep.get("size", "–"), "stage": f"{stage} (input)"})
        outs = []
        for out in entry.get("outs") or []:
            outs.append({"path": out.get("path"), "md5": out.get("md5")})
            if str(out.get("path", "")).startswith("data/"):
                data = [d for d in data if d["path"] != out["path"]]
                data.append({"path": out["path"], "md5": out.get("md5"),
                             "size": out.get("size", "–"), "stage": stage})
        for _file, values in (entry.get("params") or {}).items():
            for key, value in flatten(values or {}):
                if inputs is None or inputs.shows_param(key):
                    params.append({"stage": stage, "name": key, "value": value})
        if inputs is not None:
            outs = [o for o in outs if inputs.shows_path(str(o["path"]))]
        if outs:
            lineage.append({"stage": stage, "outs": outs})
    # a file inside a tracked directory is versioned by the directory's hash
    data = [d for d in data if not any(str(d["path"]).startswith(str(o["path"]).rstrip("/") + "/")
                                       for o in data)]
    if inputs is not None:
        data = [d for d in data if inputs.shows_path(str(d["path"]))]
    return data, params, lineage


def build_context(root: str | Path = ".", params_file: str = "params.yaml",
                  metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    from modelops.ci.compare import read_json_at, read_lock_at
    from modelops.fsutil import sha256_file
    from modelops.settings import load_settings
    from modelops.yamlio import dump_yaml

    root = Path(root)
    params = load_settings(root / params_file)
    model = {"name": params.model.name, "description": params.model.description,
             "team": params.model.team}
    if metrics is None:
        metrics = read_json_at(root, None, METRICS_FILE)
    if metrics is None:
        raise InputError(f"{METRICS_FILE} not found", hint="run the pipeline first: dvc repro")
    lock = read_lock_at(root, None)
    data, stage_params, stages = _stage_data(lock, card_inputs(root))
    onnx = root / ONNX_FILE
    onnx_md5 = next((o["md5"] for s in stages for o in s["outs"] if o["path"] == ONNX_FILE),
                    None)
    per_class = []
    for name, c in sorted((metrics.get("per_class") or {}).items(), key=lambda kv: kv[0]):
        if isinstance(c, dict):
            per_class.append({"name": name, **{k: _value(c.get(k, "–")) for k in
                                               ("precision", "recall", "f1", "support")}})
    return {
        "model": model,
        "metrics_file": METRICS_FILE,
        "front_matter": dump_yaml(front_matter(model, metrics)),
        "data": data,
        "params": stage_params,
        "metrics": [{"name": k, "value": _value(metrics[k])} for k in CARD_METRICS
                    if k in metrics],
        "per_class": per_class,
        "lineage": {
            "onnx_sha256": sha256_file(onnx) if onnx.is_file() else "not built",
            "onnx_md5": onnx_md5 or "not in dvc.lock",
            "stages": stages,
        },
    }


def render_card(context: dict[str, Any], template_dir: str | Path | None = None) -> str:
    from modelops.ci.markdown import code, md

    directory = Path(template_dir) if template_dir else Path(context.get("_root", ".")) \
        / TEMPLATE_DIR
    if not (directory / TEMPLATE).is_file():
        raise InputError(f"{directory / TEMPLATE}: model card template not found",
                         hint="run from the repository root, or pass --templates")
    env = jinja2.Environment(  # noqa: S701 - Markdown; values pass through md/code filters
        loader=jinja2.FileSystemLoader(str(directory)), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, trim_blocks=False, lstrip_blocks=False)
    env.filters.update(md=md, code=code)
    text = env.get_template(TEMPLATE).render(**context)
    return re.sub(r"\n{3,}", "\n\n", text)


def validate_card(text: str, model: str | None = None) -> dict[str, Any]:
    """Parse the card with ``huggingface_hub.ModelCard`` (offline) and check its metadata.

    Returns the metadata dict; raises ValidationError naming what is wrong.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from huggingface_hub import ModelCard

    try:
        card = ModelCard(text, ignore_metadata_errors=False)
    except Exception as exc:  # huggingface_hub raises ValueError and friends
        raise ValidationError(f"model card: front matter rejected by huggingface_hub: {exc}",
                              hint="fix model-cards/templates/model-card.md.j2") from exc
    meta = card.data.to_dict()
    if model is not None and "model-index" in meta:
        if card.data.model_name != model:
            raise ValidationError(f"model card: model-index name {card.data.model_name!r} is "
                                  f"not the model {model!r}")
        if not card.data.eval_results:
            raise ValidationError("model card: model-index has no results")
    return meta


def generate_card(root: str | Path = ".", params_file: str = "params.yaml",
                  template_dir: str | Path | None = None) -> tuple[str, str]:
    """Return ``(model name, card text)``, validated but not written."""
    context = build_context(root, params_file)
    text = render_card(context, template_dir or Path(root) / TEMPLATE_DIR)
    validate_card(text, context["model"]["name"])
    return context["model"]["name"], text
