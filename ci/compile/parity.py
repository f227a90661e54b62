"""Parity of a compiled model against the ONNX Runtime reference on the held-out test split."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from modelops.settings.compile import Tolerance

_REL_FLOOR = 1e-6  # denominators below this count as this, so zeros do not divide


@dataclass(frozen=True)
class ParityResult:
    n: int
    max_abs_error: float
    max_rel_error: float
    mismatched_elements: int          # elements beyond atol + rtol * |reference|
    top1_agreement: float
    accuracy: float                   # compiled model on the test labels
    reference_accuracy: float         # ONNX Runtime reference on the same labels
    passed: bool
    failures: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def compare(compiled: np.ndarray, reference: np.ndarray, labels: np.ndarray,
            tol: Tolerance) -> ParityResult:
    """Compare logits ``compiled`` with ``reference`` ([N, classes]) and judge by ``tol``."""
    if compiled.shape != reference.shape:
        raise ValueError(f"compiled output shape {compiled.shape} differs from the "
                         f"reference {reference.shape}")
    c = compiled.astype(np.float64)
    r = reference.astype(np.float64)
    diff = np.abs(c - r)
    rel = diff / np.maximum(np.abs(r), _REL_FLOOR)
    bad = int(np.count_nonzero(diff > tol.atol + tol.rtol * np.abs(r)))
    top_c, top_r = c.argmax(axis=1), r.argmax(axis=1)
    agreement = float(np.mean(top_c == top_r)) if len(c) else 1.0
    acc = float(np.mean(top_c == labels)) if len(c) else 0.0
    ref_acc = float(np.mean(top_r == labels)) if len(c) else 0.0
    if not np.all(np.isfinite(c)):
        bad = max(bad, int(np.count_nonzero(~np.isfinite(c))))
    failures = []
    if bad:
        failures.append(f"{bad} of {c.size} logits differ beyond atol {tol.atol:g} + rtol "
                        f"{tol.rtol:g} x |reference| (max abs error {float(diff.max()):.3g})")
    if agreement < tol.min_top1_agreement:
        failures.append(f"top-1 agreement {agreement:.4f} is below {tol.min_top1_agreement:g}")
    if ref_acc - acc > tol.max_accuracy_drop + 1e-12:
        failures.append(f"accuracy dropped from {ref_acc:.4f} to {acc:.4f} (more than "
                        f"{tol.max_accuracy_drop:g})")
    return ParityResult(
        n=len(c), max_abs_error=float(diff.max()) if diff.size else 0.0,
        max_rel_error=float(rel.max()) if rel.size else 0.0, mismatched_elements=bad,
        top1_agreement=agreement, accuracy=acc, reference_accuracy=ref_acc,
        passed=not failures, failures=failures)


def run_in_batches(infer, x: np.ndarray, batch: int) -> np.ndarray:
    """Run ``infer`` over ``x`` in chunks no larger than ``batch`` (the profile's max)."""
    return np.concatenate([infer(x[i:i + batch]) for i in range(0, len(x), batch)], axis=0)
