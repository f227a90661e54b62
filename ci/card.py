"""The model card, rendered from the repository's self-description (``modelops.model``).

Inputs: ``params.yaml`` (``modelops.model``: name, description, team, headline metrics, the
card's template, path, stage and Hugging Face metadata), ``dvc.lock`` (data hashes, parameters
and outputs of every stage), the metrics files (headline metrics, and per-class slices when a
metrics file has a ``per_class`` mapping) and the ONNX artifact, when there is one (sha256).
The template is ``modelops.model.card.template``, or the suite's built-in one
(``ci/templates/model-card.md.j2``) when the repository has none. The YAML front matter follows
the Hugging Face model card metadata (``modelops.model.card.metadata``, plus a ``model-index``
of the headline metrics when ``pipeline_tag`` and ``datasets`` are set), written through
:mod:`modelops.yamlio` and checked by loading the card with ``huggingface_hub.ModelCard``
before anything is written.

When ``modelops.model.card.stage`` names a DVC stage that writes the card, the card is a pure
function of what that stage declares: it shows only the stages upstream of it and, of their
hashes and parameters, only the ones the stage lists as ``deps`` and ``params``. A change to
anything the card shows therefore reruns the stage, and nothing else can change it: no
timestamp, no git commit. The same inputs give the same bytes, and a PR diff shows only real
changes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from modelops.ci.metrics import MetricsAt, per_class, resolve
from modelops.errors import InputError, ValidationError
from modelops.fsutil import sha256_file
from modelops.settings import Settings, load_settings
from modelops.settings.model import ModelSettings
from modelops.yamlio import dump_yaml, load_yaml_file

BUILTIN_TEMPLATE = Path(__file__).parent / "templates" / "model-card.md.j2"
# file suffixes of code, never listed as training data by the default rule
CODE_SUFFIXES = frozenset({
    ".py", ".pyx", ".ipynb", ".sh", ".bash", ".r", ".jl", ".j2", ".jinja", ".js", ".ts",
    ".go", ".rs", ".c", ".cc", ".cpp", ".h", ".hpp", ".java", ".scala", ".kt", ".sql", ".m"})


def card_path(model: ModelSettings | str, root: str | Path = ".") -> Path:
    """Where the card of ``model`` is written (``modelops.model.card.path``)."""
    rel = model.card_path if isinstance(model, ModelSettings) else f"model-cards/{model}.md"
    return Path(root) / rel


def template_path(model: ModelSettings, root: str | Path = ".") -> Path:
    """The card template: the repository's own, or the suite's built-in one."""
    return Path(root) / model.card.template if model.card.template else BUILTIN_TEMPLATE


@dataclass(frozen=True)
class CardInputs:
    """What the card stage of ``dvc.yaml`` declares: the card shows nothing else."""

    stage: str               # the card stage's name
    stages: frozenset[str]   # the stages upstream of the card stage
    deps: frozenset[str]     # paths whose DVC hashes the card may show
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


def card_inputs(root: str | Path = ".", stage: str = "") -> CardInputs | None:
    """The card stage's inputs from ``dvc.yaml``; ``None`` when ``stage`` is '' or not there."""

    path = Path(root) / "dvc.yaml"
    if not stage or not path.is_file():
        return None
    stages = (load_yaml_file(path) or {}).get("stages") or {}
    card = stages.get(stage)
    if not isinstance(card, dict):
        return None
    owner = {}
    for name, entry in stages.items():
        if name != stage and isinstance(entry, dict):
            for out in _paths(entry.get("outs")) + _paths(entry.get("metrics")) \
                    + _paths(entry.get("plots")):
                owner[out.rstrip("/")] = name

    def producer(dep: str) -> str | None:
        return next((s for out, s in owner.items()
                     if dep == out or dep.startswith(out + "/")), None)

    upstream: set[str] = set()
    todo = _paths(card.get("deps"))
    while todo:
        producing = producer(todo.pop())
        if producing is not None and producing not in upstream:
            upstream.add(producing)
            todo.extend(_paths(stages[producing].get("deps")))
    return CardInputs(stage, frozenset(upstream),
                      frozenset(p.rstrip("/") for p in _paths(card.get("deps"))),
                      tuple(_params(card.get("params"))))


def _value(v: Any) -> Any:
    return round(v, 6) if isinstance(v, float) else v


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def front_matter(model: ModelSettings, headline: list[dict[str, Any]]) -> dict[str, Any]:
    """Hugging Face model card metadata: ``modelops.model.card.metadata``, plus a
    ``model-index`` of the headline metrics when it names the task and the data set."""
    meta = dict(model.card.metadata)
    tags = list(meta.get("tags") or [])
    if "modelops-suite" not in tags:
        tags.append("modelops-suite")
    meta["tags"] = tags
    task, datasets = meta.get("pipeline_tag"), meta.get("datasets")
    results = [{"type": str(m["name"]).rsplit(".", 1)[-1].rsplit(":", 1)[-1],
                "value": _value(m["value"]), "name": m["name"]}
               for m in headline if _is_number(m["value"])]
    if results and isinstance(task, str) and task and isinstance(datasets, list) and datasets:
        meta["model-index"] = [{
            "name": model.name,
            "results": [{"task": {"type": task},
                         "dataset": {"name": str(datasets[0]), "type": str(datasets[0])},
                         "metrics": results}],
        }]
    return meta


def _lock_entries(lock: Mapping[str, Any]) -> tuple[dict[str, dict], dict[str, dict]]:
    """``path -> (stage, entry)`` of every output and every dependency in ``dvc.lock``."""
    outs: dict[str, dict] = {}
    deps: dict[str, dict] = {}
    for stage, entry in lock.items():
        for out in (entry or {}).get("outs") or []:
            outs.setdefault(str(out.get("path")), {"stage": stage, **out})
        for dep in (entry or {}).get("deps") or []:
            deps.setdefault(str(dep.get("path")), {"stage": f"{stage} (input)", **dep})
    return outs, deps


def _is_code(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in CODE_SUFFIXES


def _data_rows(lock: Mapping[str, Any], inputs: CardInputs | None, data_paths: Sequence[str],
               hidden: set[str]) -> list[dict[str, Any]]:
    """The training-data table: ``modelops.model.data``, or the pipeline's source data (inputs
    no stage produces that are not code)."""
    outs, deps = _lock_entries(lock)
    if inputs is not None:
        outs = {p: e for p, e in outs.items() if e["stage"] in inputs.stages}
        deps = {p: e for p, e in deps.items()
                if e["stage"].removesuffix(" (input)") in inputs.stages}
    if data_paths:
        paths = [p.rstrip("/") for p in data_paths]
    else:
        paths = [p for p in deps if p not in outs and not _is_code(p) and p not in hidden
                 and not any(p.startswith(o.rstrip("/") + "/") for o in outs)]
    rows = []
    for path in paths:
        entry = outs.get(path) or deps.get(path)
        if inputs is not None and not inputs.shows_path(path):
            continue
        rows.append({"path": path, "md5": (entry or {}).get("md5") or "not in dvc.lock",
                     "size": (entry or {}).get("size", "–"),
                     "stage": (entry or {}).get("stage", "–")})
    return rows


def _stage_data(lock: Mapping[str, Any], inputs: CardInputs | None = None,
                ) -> tuple[list[dict], list[dict]]:
    from modelops.ci.compare import flatten

    params, lineage = [], []
    for stage, entry in lock.items():
        if inputs is not None and stage not in inputs.stages:
            continue  # the card stage itself, and stages beside it (compile)
        entry = entry or {}
        for _file, values in (entry.get("params") or {}).items():
            for key, value in flatten(values or {}):
                if inputs is None or inputs.shows_param(key):
                    params.append({"stage": stage, "name": key, "value": value})
        outs = [{"path": out.get("path"), "md5": out.get("md5")}
                for out in entry.get("outs") or []]
        if inputs is not None:
            outs = [o for o in outs if inputs.shows_path(str(o["path"]))]
        if outs:
            lineage.append({"stage": stage, "outs": outs})
    return params, lineage


def workspace_metrics(root: Path, files: Sequence[str]) -> MetricsAt:
    """The metrics files as they are in the workspace (parsed the way DVC parses them)."""
    from modelops.ci.metrics import error_text, parse_metrics_text

    at = MetricsAt("workspace")
    for file in files:
        path = root / file
        if not path.is_file():
            at.errors[file] = "not found"
            continue
        try:
            at.files[file] = parse_metrics_text(path.read_text(encoding="utf-8"), file)
        except Exception as exc:  # DVC's parsers raise their own error types
            at.errors[file] = error_text(exc)
    return at


def declared_metrics(root: str | Path) -> list[str]:
    """Every metrics file ``dvc.yaml`` declares (stages' ``metrics`` and top-level ``metrics``),
    in DVC's order, read with DVC's own index."""
    from dvc.repo import Repo

    from modelops.ci.metrics import normalise

    root = Path(root)
    if not (root / ".dvc").is_dir():
        return []
    with Repo(str(root)) as repo:
        files = [os.path.relpath(out.fs_path, repo.root_dir) for out in repo.index.metrics]
        for dvcfile, metrics in repo.index._metrics.items():  # top-level `metrics:`
            wdir = os.path.relpath(os.path.dirname(dvcfile), repo.root_dir)
            files.extend(os.path.join(wdir, str(m)) for m in metrics)
    return list(dict.fromkeys(normalise(f) for f in files))


def metrics_files(settings: Settings, root: str | Path = ".") -> list[str]:
    return list(settings.model.metrics) or declared_metrics(root)


def headline_values(model: ModelSettings, files: Sequence[str],
                    metrics: MetricsAt) -> list[dict[str, Any]]:
    """``[{name, value, direction}]`` of the headline metrics (ConfigError when ambiguous)."""
    from modelops.ci.metrics import value_of

    out = []
    for name, direction in model.headline.items():
        ref = resolve(name, files, metrics, where=f"modelops.model.headline.{name}")
        out.append({"name": name, "file": ref.file, "value": value_of(ref, metrics),
                    "direction": direction})
    return out


def build_context(root: str | Path = ".", params_file: str = "params.yaml",
                  metrics: MetricsAt | None = None,
                  files: Sequence[str] | None = None) -> dict[str, Any]:
    from modelops.ci.compare import read_lock_at

    root = Path(root)
    settings = load_settings(root / params_file)
    model = settings.model
    files = list(files) if files is not None else metrics_files(settings, root)
    if metrics is None:
        metrics = workspace_metrics(root, files)
    if not files or metrics.empty:
        missing = ", ".join(files) or "none declared"
        raise InputError(f"no metrics for the card ({missing} not found)",
                         hint="run the pipeline first: dvc repro (or list the files in "
                              "modelops.model.metrics)")
    primary = next((f for f in files if metrics.data(f)), files[0])
    headline = headline_values(model, files, metrics)
    if not headline:  # no headline: the primary file's top-level numbers
        headline = [{"name": k, "file": primary, "value": v, "direction": None}
                    for k, v in (metrics.data(primary) or {}).items() if _is_number(v)]
    lock = read_lock_at(root, None)
    inputs = card_inputs(root, model.card.stage)
    artifact = model.artifact.path
    hidden = {model.card_path, *files, *model.plots}
    data = _data_rows(lock, inputs, model.data, hidden)
    stage_params, stages = _stage_data(lock, inputs)
    onnx = root / artifact if artifact else None
    onnx_md5 = next((o["md5"] for s in stages for o in s["outs"] if o["path"] == artifact),
                    None) if artifact else None
    if not onnx_md5 and artifact:
        onnx_md5 = next((o.get("md5") for e in lock.values() for o in (e or {}).get("outs") or []
                         if o.get("path") == artifact), None)
    slices_file = next((f for f in files if per_class(metrics.data(f))), None)
    slices = []
    for name, c in sorted(per_class(metrics.data(slices_file)).items(),
                          key=lambda kv: (0, int(kv[0])) if kv[0].isdigit() else (1, kv[0])):
        slices.append({"name": name, **{k: _value(c.get(k, "–")) for k in
                                        ("precision", "recall", "f1", "support")}})
    return {
        "model": {"name": model.name, "description": model.description, "team": model.team},
        "metrics_file": primary,
        "metrics_files": files,
        "front_matter": dump_yaml(front_matter(model, headline)),
        "data": data,
        "params": stage_params,
        "metrics": [{"name": m["name"], "value": _value(m["value"]) if m["value"] is not None
                     else "–", "direction": m["direction"]} for m in headline],
        "per_class": slices,
        "artifact": artifact,
        "lineage": {
            "onnx_sha256": (sha256_file(onnx) if onnx and onnx.is_file() else "not built")
            if artifact else "no ONNX artifact",
            "onnx_md5": (onnx_md5 or "not in dvc.lock") if artifact else "no ONNX artifact",
            "stages": stages,
        },
    }


def render_card(context: dict[str, Any], template: str | Path | None = None) -> str:
    """Render ``template`` (a file; ``None`` = the built-in one) with ``context``."""
    from modelops.ci.markdown import code, md

    path = Path(template) if template else BUILTIN_TEMPLATE
    if path.is_dir():  # a folder holding the conventional template name
        path = path / "model-card.md.j2"
    if not path.is_file():
        raise InputError(f"{path}: model card template not found",
                         hint="fix modelops.model.card.template in params.yaml, or set it to "
                              "'' for the suite's built-in template")
    env = jinja2.Environment(  # noqa: S701 - Markdown; values pass through md/code filters
        loader=jinja2.FileSystemLoader(str(path.parent)), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, trim_blocks=False, lstrip_blocks=False)
    env.filters.update(md=md, code=code)
    try:
        text = env.get_template(path.name).render(**context)
    except jinja2.TemplateError as exc:
        raise InputError(f"{path}: the card template failed: {exc}",
                         hint="fix the template (variables: model, metrics, per_class, data, "
                              "params, lineage, front_matter)") from exc
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
                              hint="fix the card template or modelops.model.card.metadata"
                              ) from exc
    meta = card.data.to_dict()
    if model is not None and "model-index" in meta:
        if card.data.model_name != model:
            raise ValidationError(f"model card: model-index name {card.data.model_name!r} is "
                                  f"not the model {model!r}")
        if not card.data.eval_results:
            raise ValidationError("model card: model-index has no results")
    return meta


def generate_card(root: str | Path = ".", params_file: str = "params.yaml",
                  template: str | Path | None = None, *, metrics: MetricsAt | None = None,
                  files: Sequence[str] | None = None) -> tuple[str, str]:
    """Return ``(model name, card text)``, validated but not written. ``template`` overrides
    ``modelops.model.card.template``; ``metrics`` (with ``files``) are the metrics already read
    (the report passes the head's)."""

    root = Path(root)
    model = load_settings(root / params_file).model
    context = build_context(root, params_file, metrics, files)
    text = render_card(context, template or template_path(model, root))
    validate_card(text, context["model"]["name"])
    return context["model"]["name"], text
