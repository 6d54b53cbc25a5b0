"""Parity: does the candidate artifact compute what the reference model computes?

Both run on the same inputs; each output gets metrics (max/mean abs error, max relative
error, cosine similarity, SNR, accuracy when labels are given) and is judged against a
tolerance preset. NaN or Inf in either side never passes. Results are plain data; a report
is truthy when it passed.

Outputs have kinds, judged by what they compute on top of the whole-tensor checks (see
OUTPUT_KINDS; declared with --output-kind NAME=KIND, else inferred by `infer_kind`, which
says how): classification (top-1 on samples whose reference margin is above the
precision's noise), regression (relative error), embedding (per-row cosine), detection
(boxes matched by IoU and class scores above a threshold at the reference's detections),
sequence (per-position and whole-sequence argmax agreement). Rates come with a Wilson
interval; the accuracy drop is judged with it, so one flipped label in 48 samples is noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgekit.errors import BadInput
from edgekit.targets import OUTPUT_KINDS, Tolerance
from edgekit.tensors import Signature

_EPS = 1e-12


@dataclass
class Check:
    criterion: str
    value: float
    limit: float
    ok: bool

    def describe(self) -> str:
        if self.criterion == "allclose":
            return f"abs error {self.value:.3g} at the worst element (allowed {self.limit:.3g} = atol + rtol·|ref|)"
        if self.criterion == "runs_on_arch":
            return "the artifact does not load or run on this architecture (see the note)"
        if self.criterion == "finite":
            return "NaN or Inf in the outputs"
        if self.criterion == "min_rows_close":
            return (f"{self.value * 100:.1f}% of samples within atol/rtol (needs >= {self.limit * 100:g}%)")
        if self.criterion == "shape_mismatch":
            return f"{int(self.value)} values where the reference has {int(self.limit)}"
        if self.criterion in _KIND_CHECKS:
            return f"{_KIND_CHECKS[self.criterion]} {self.value:.4g} (needs >= {self.limit:g})"
        op = ">=" if self.criterion.startswith("min_") else "<="
        name = self.criterion.removeprefix("min_").removeprefix("max_")
        return f"{name} {self.value:.4g} (needs {op} {self.limit:g})"


@dataclass
class OutputParity:
    name: str
    candidate_name: str
    shape: list
    metrics: dict
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict:
        return {"name": self.name, "candidate_name": self.candidate_name, "shape": self.shape,
                "passed": self.passed, "metrics": self.metrics,
                "checks": [c.__dict__ for c in self.checks]}


@dataclass
class ParityReport:
    precision: str
    tolerance: Tolerance
    samples: int
    data_source: str
    outputs: list[OutputParity]
    notes: list[str] = field(default_factory=list)
    accuracy: dict | None = None  # {"reference": .., "candidate": .., "delta": ..}
    arch: str = "host"

    @property
    def passed(self) -> bool:
        ok = all(o.passed for o in self.outputs)
        if self.accuracy and "ok" in self.accuracy:
            ok = ok and self.accuracy["ok"]
        return ok

    def __bool__(self) -> bool:
        return self.passed

    def failure_summary(self) -> str:
        """One aggregated line listing every failing output and criterion."""
        parts = [f"{o.name}: " + ", ".join(c.describe() for c in o.failed_checks())
                 for o in self.outputs if not o.passed]
        if self.accuracy and not self.accuracy.get("ok", True):
            lo, hi = self.accuracy.get("drop_ci95", (None, None))
            ci = f", 95% interval {lo * 100:.2f} to {hi * 100:.2f}" if lo is not None else ""
            parts.append(f"accuracy drop {-self.accuracy['delta'] * 100:.2f} points{ci} "
                         f"(allowed {self.tolerance.max_accuracy_drop * 100:g})")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "precision": self.precision, "arch": self.arch,
                "tolerance": self.tolerance.as_dict(), "samples": self.samples,
                "data_source": self.data_source, "notes": self.notes, "accuracy": self.accuracy,
                "outputs": [o.to_dict() for o in self.outputs]}


def _classifier_shaped(a: np.ndarray) -> bool:
    return a.ndim == 2 and a.shape[1] > 1


def _predicted_labels(a: np.ndarray) -> np.ndarray:
    return a.argmax(-1) if _classifier_shaped(a) else a.reshape(len(a), -1)[:, 0]


def _is_label_output(ref: np.ndarray, cand: np.ndarray) -> bool:
    """Strings, or integers/booleans on both sides (class labels, indices): compared for agreement."""
    if ref.dtype.kind in "USO" or cand.dtype.kind in "USO":
        return True
    return ref.dtype.kind in "iub" and cand.dtype.kind in "iub"


_KIND_CHECKS = {
    "min_row_cosine": "worst per-sample cosine",
    "min_det_recall": "reference detections kept (same anchor, IoU >= 0.5, same class, score above threshold)",
    "min_det_precision": "candidate detections that the reference also has",
    "min_position_top1": "per-position argmax agreement",
    "min_sequence_agreement": "whole-sequence agreement",
}
# A sample whose reference top-1 margin is within the precision's noise is ambiguous: its top
# two classes may swap without anything being wrong. Noise is a fraction of the output's range:
# one int8 step (1/255) for the integer precisions, ~3 significant digits for fp16.
MARGIN_NOISE = {"fp32": 1e-5, "fp16": 1e-3, "dynamic": 1 / 255, "int8": 1 / 255}
DETECTION_SCORE = 0.25  # a detection: class score above this (YOLO's default confidence)
DETECTION_IOU = 0.5
DETECTION_FALLBACK = 10  # if the reference detects nothing, its best anchors are checked instead
_WILSON_Z = 1.96  # 95%


def wilson(successes: float, n: int, z: float = _WILSON_Z) -> tuple[float, float]:
    """Wilson score interval of a rate (95%): honest at small n and at rates near 0 or 1."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (float(max(0.0, mid - half)), float(min(1.0, mid + half)))


def samples_for_gate(max_drop: float, z: float = _WILSON_Z) -> int:
    """Samples an accuracy gate needs to detect a real drop of twice its allowance: the smallest n
    at which losing 2*max_drop*n samples puts the Wilson lower bound of the loss above max_drop."""
    if not max_drop or max_drop <= 0:
        return 0
    for n in range(10, 1_000_000, 10):
        if wilson(2 * max_drop * n, n, z)[0] > max_drop:
            return n
    return 1_000_000


def _name_says(name: str, *words: str) -> bool:
    low = name.lower()
    return any(w in low for w in words)


def infer_kind(name: str, ref: np.ndarray) -> tuple[str | None, str]:
    """The kind of a float output, and how it was inferred (None: compared as a plain tensor)."""
    if ref.dtype.kind not in "fc" or ref.ndim < 1:
        return None, ""
    if ref.ndim <= 1 or (ref.ndim == 2 and ref.shape[1] == 1):
        return "regression", "one value per sample"
    if ref.ndim == 2:
        if _name_says(name, "embed", "feature", "vector", "pooler", "hidden"):
            return "embedding", f"2-D output named '{name}'"
        return "classification", "2-D [N, C] output: compared as class scores"
    if ref.ndim == 3:
        finite = np.isfinite(ref).all()
        small, large = sorted(ref.shape[1:])
        if finite and 5 <= small <= 300 and large >= 8 * small:
            det = ref if ref.shape[2] == small else np.swapaxes(ref, 1, 2)  # [N, A, 4+K]
            scores, boxes = det[..., 4:], det[..., :4]
            if scores.min() >= 0 and scores.max() <= 1 and np.abs(boxes).max() > 1.5:
                return "detection", (f"3-D output with {small} channels over {large} anchors: 4 box values "
                                     f"(pixels) and {small - 4} scores in [0, 1]")
        if finite and ref.shape[2] > 1 and ref.min() >= 0 and np.allclose(ref.sum(-1), 1, atol=1e-3):
            return "sequence", "3-D [N, T, C] output whose rows are probabilities"
        if _name_says(name, "logit", "ctc", "char", "token", "seq"):
            return "sequence", f"3-D [N, T, C] output named '{name}'"
    return None, ""


def _confident(ref: np.ndarray, precision: str) -> np.ndarray:
    """Positions (all but the last axis) whose reference top-1 margin exceeds the precision's noise."""
    top2 = np.sort(ref, axis=-1)[..., -2:]
    margin = top2[..., 1] - top2[..., 0]
    span = float(ref.max() - ref.min()) if ref.size else 0.0
    return margin > MARGIN_NOISE.get(precision, MARGIN_NOISE["fp32"]) * span


def _rate(ok: np.ndarray, prefix: str) -> dict:
    n = int(ok.size)
    k = int(ok.sum())
    return {prefix: k / n if n else 1.0, f"{prefix}_ci95": list(wilson(k, n)), f"{prefix}_n": n}


def _boxes_xyxy(b: np.ndarray) -> np.ndarray:
    cx, cy, w, h = (b[..., i] for i in range(4))
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = _boxes_xyxy(a), _boxes_xyxy(b)
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: np.clip(x[..., 2] - x[..., 0], 0, None) * np.clip(x[..., 3] - x[..., 1], 0, None)  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-12)


def detection_metrics(ref: np.ndarray, cand: np.ndarray) -> dict:
    """Detection outputs [N, 4+K, A] or [N, A, 4+K] (boxes as cx, cy, w, h, then K class scores):
    at every anchor where the reference detects something (best score above DETECTION_SCORE),
    the candidate must detect the same class with a box of IoU >= DETECTION_IOU; and what the
    candidate detects, the reference must too. Whole-tensor metrics cannot see this: pixel-valued
    boxes swamp the scores, so a detector whose scores are all zero keeps a cosine of 0.999."""
    small = min(ref.shape[1:])
    if ref.shape[2] != small:
        ref, cand = np.swapaxes(ref, 1, 2), np.swapaxes(cand, 1, 2)
    rs, cs = ref[..., 4:], cand[..., 4:]
    r_best, c_best = rs.max(-1), cs.max(-1)
    r_pos = r_best > DETECTION_SCORE
    c_pos = c_best > DETECTION_SCORE
    m: dict = {"detection_score_threshold": DETECTION_SCORE, "reference_detections": int(r_pos.sum()),
               "candidate_detections": int(c_pos.sum())}
    if not r_pos.any():  # nothing detected in the reference: check its best anchors instead
        flat = np.argsort(r_best, axis=None)[::-1][:DETECTION_FALLBACK]
        r_pos = np.zeros_like(r_pos)
        r_pos.flat[flat] = True
        m["note"] = f"the reference detects nothing above {DETECTION_SCORE}; its {len(flat)} best anchors are checked"
        c_thr = 0.5 * r_best[r_pos].min()
        kept = (c_best >= c_thr) & r_pos
    else:
        kept = c_pos & r_pos
    iou = _iou(ref[..., :4], cand[..., :4])
    same_class = rs.argmax(-1) == cs.argmax(-1)
    match = kept & same_class & (iou >= DETECTION_IOU)
    m.update(_rate(match[r_pos], "det_recall"))
    if c_pos.any():
        back = r_best >= 0.5 * DETECTION_SCORE  # the reference agrees, allowing for noise at the threshold
        m.update(_rate((back & same_class & (iou >= DETECTION_IOU))[c_pos], "det_precision"))
    else:
        m["det_precision"] = 1.0  # no candidate detections, so none is false (det_recall counts the misses)
    m["mean_iou"] = float(iou[r_pos].mean())
    m["score_mean_abs"] = float(np.abs(r_best - c_best)[r_pos].mean())
    return m


def kind_metrics(kind: str, ref: np.ndarray, cand: np.ndarray, precision: str) -> dict:
    """Metrics that fit what the output computes (on top of the whole-tensor ones)."""
    r = ref.astype(np.float64)
    c = cand.astype(np.float64)
    if kind == "classification" and r.ndim >= 2 and r.shape[-1] > 1:
        rows_r, rows_c = r.reshape(-1, r.shape[-1]), c.reshape(-1, r.shape[-1])
        sure = _confident(rows_r, precision)
        m = _rate((rows_r.argmax(-1) == rows_c.argmax(-1))[sure], "top1")
        m["ambiguous"] = int((~sure).sum())
        return m
    if kind == "sequence" and r.ndim == 3:
        sure = _confident(r, precision)
        same = r.argmax(-1) == c.argmax(-1)
        m = _rate(same[sure], "position_top1")
        m.update(_rate((same | ~sure).all(axis=1), "sequence_agreement"))
        m["ambiguous_positions"] = int((~sure).sum())
        return m
    if kind == "detection" and r.ndim == 3 and min(r.shape[1:]) >= 5:
        return detection_metrics(r, c)
    if kind == "embedding" and r.ndim >= 2:
        rr, cc = r.reshape(len(r), -1), c.reshape(len(c), -1)
        nr, nc = np.linalg.norm(rr, axis=1), np.linalg.norm(cc, axis=1)
        cos = np.where((nr < _EPS) & (nc < _EPS), 1.0, (rr * cc).sum(1) / np.maximum(nr * nc, _EPS))
        return {"row_cosine_min": float(cos.min()), "row_cosine_mean": float(cos.mean())}
    if kind == "regression":
        return {"rel_error": float(np.linalg.norm(r - c) / max(np.linalg.norm(r), _EPS))}
    return {}


def _kind_checks(kind: str | None, m: dict, tol: Tolerance) -> list[Check]:
    agree = tol.min_top1
    out = []
    if kind == "classification" and agree is not None and "top1" in m:
        out.append(Check("min_top1", m["top1"], agree, m["top1"] >= agree))
    elif kind == "sequence" and agree is not None and "position_top1" in m:
        out += [Check("min_position_top1", m["position_top1"], agree, m["position_top1"] >= agree),
                Check("min_sequence_agreement", m["sequence_agreement"], agree, m["sequence_agreement"] >= agree)]
    elif kind == "detection" and agree is not None and "det_recall" in m:
        out += [Check("min_det_recall", m["det_recall"], agree, m["det_recall"] >= agree),
                Check("min_det_precision", m["det_precision"], agree, m["det_precision"] >= agree)]
    elif kind == "embedding" and tol.min_cosine is not None and "row_cosine_min" in m:
        out.append(Check("min_row_cosine", m["row_cosine_min"], tol.min_cosine, m["row_cosine_min"] >= tol.min_cosine))
    return out


def output_metrics(ref: np.ndarray, cand: np.ndarray) -> dict:
    """Every metric for one output pair (any shape; compared as flat float64)."""
    if _is_label_output(ref, cand):
        if ref.dtype.kind in "USO" or cand.dtype.kind in "USO":
            same = ref.astype(str) == cand.astype(str)
        else:
            same = ref == cand
        agree = float(np.mean(same)) if ref.size else 1.0
        return {"agreement": agree, "finite": True, "disagreeing": int(same.size - same.sum())}
    r = ref.astype(np.float64).ravel()
    c = cand.astype(np.float64).ravel()
    finite = bool(np.isfinite(r).all() and np.isfinite(c).all())
    if not finite:
        return {"finite": False, "nonfinite_reference": int((~np.isfinite(r)).sum()),
                "nonfinite_candidate": int((~np.isfinite(c)).sum())}
    d = np.abs(r - c)
    m = {
        "finite": True,
        "max_abs": float(d.max()) if d.size else 0.0,
        "mean_abs": float(d.mean()) if d.size else 0.0,
        "max_rel": float((d / np.maximum(np.abs(r), 1e-6)).max()) if d.size else 0.0,
    }
    nr, nc = np.linalg.norm(r), np.linalg.norm(c)
    m["cosine"] = 1.0 if nr < _EPS and nc < _EPS else float(np.dot(r, c) / max(nr * nc, _EPS))
    noise = float(np.sum((r - c) ** 2))
    m["snr_db"] = 200.0 if noise < _EPS else float(10 * np.log10(max(np.sum(r ** 2), _EPS) / noise))
    return m


def _checks(ref: np.ndarray, cand: np.ndarray, m: dict, tol: Tolerance) -> list[Check]:
    if not m.get("finite", True):
        return [Check("finite", 0.0, 1.0, False)]
    if "agreement" in m:
        # label outputs: as many must agree as the preset's top-1 agreement asks (all, without one)
        limit = tol.min_top1 if tol.min_top1 is not None else 1.0
        return [Check("min_agreement", m["agreement"], limit, m["agreement"] >= limit)]
    checks = []
    if tol.atol is not None or tol.rtol is not None:
        atol, rtol = tol.atol or 0.0, tol.rtol or 0.0
        r = ref.astype(np.float64).ravel()
        diff = np.abs(cand.astype(np.float64).ravel() - r)
        allowed = atol + rtol * np.abs(r)
        if diff.size and tol.min_rows_close is not None and ref.ndim >= 1 and len(ref):
            rows_ok = (diff <= allowed).reshape(len(ref), -1).all(axis=1)
            frac = float(rows_ok.mean())
            m["rows_close"] = frac
            checks.append(Check("min_rows_close", frac, tol.min_rows_close, frac >= tol.min_rows_close))
        elif diff.size:
            i = int(np.argmax(diff - allowed))  # the element furthest past its bound
            checks.append(Check("allclose", float(diff[i]), float(allowed[i]), bool(diff[i] <= allowed[i])))
    if tol.min_cosine is not None:
        checks.append(Check("min_cosine", m["cosine"], tol.min_cosine, m["cosine"] >= tol.min_cosine))
    if tol.min_snr_db is not None:
        checks.append(Check("min_snr_db", m["snr_db"], tol.min_snr_db, m["snr_db"] >= tol.min_snr_db))
    return checks


def align_outputs(ref_sig: Signature, cand_sig: Signature) -> tuple[list[tuple[str, str]], list[str]]:
    """Pair reference outputs with candidate outputs: by name, else by position."""
    ref_names = [o.name for o in ref_sig.outputs]
    cand_names = [o.name for o in cand_sig.outputs]
    if set(ref_names) <= set(cand_names):
        return [(n, n) for n in ref_names], []
    if len(ref_names) == len(cand_names):
        note = [] if len(ref_names) == 1 else [
            "outputs matched by position (names differ): " +
            ", ".join(f"{a}→{b}" for a, b in zip(ref_names, cand_names))]
        return list(zip(ref_names, cand_names)), note
    raise BadInput(f"the reference has {len(ref_names)} outputs ({', '.join(ref_names)}) but the candidate has "
                   f"{len(cand_names)} ({', '.join(cand_names)}); they cannot be compared.",
                   hint="check that the artifact was converted from this source model")


def align_inputs(ref_sig: Signature, cand_sig: Signature) -> dict[str, str]:
    """Map reference input names to candidate input names: by name, else by position.
    A scalar input of the reference that the candidate does not take was fixed at conversion
    (torch.export specializes Python scalars): it feeds only the reference."""
    cand_names = cand_sig.input_names
    fixed = [t.name for t in ref_sig.inputs if tuple(t.shape) == () and t.name not in cand_names]
    ref_names = [n for n in ref_sig.input_names if n not in fixed]
    if set(ref_names) <= set(cand_names):
        return {n: n for n in ref_names}
    if len(ref_names) == len(cand_names):
        return dict(zip(ref_names, cand_names))
    raise BadInput(f"the reference takes {len(ref_names)} inputs ({', '.join(ref_names)}) but the candidate "
                   f"takes {len(cand_names)} ({', '.join(cand_names)}).",
                   hint="check that the artifact was converted from this source model")


def compare(ref_out: dict, cand_out: dict, pairs: list[tuple[str, str]], tolerance: Tolerance, *,
            precision: str, data_source: str, labels: np.ndarray | None = None,
            notes: list[str] | None = None, kinds: dict | None = None) -> ParityReport:
    """Judge candidate outputs against reference outputs. `kinds` ({output name: kind}) are the
    declared kinds; other outputs get the kind `infer_kind` finds, or none."""
    kinds = dict(kinds or {})
    unknown = sorted(set(kinds) - {r for r, _ in pairs} - {c for _, c in pairs})
    if unknown:
        raise BadInput(f"--output-kind names {', '.join(unknown)}, which the model does not output.",
                       hint="outputs: " + ", ".join(r for r, _ in pairs))
    bad = sorted({k for k in kinds.values() if k not in OUTPUT_KINDS})
    if bad:
        raise BadInput(f"unknown output kind {', '.join(bad)}.", hint=f"kinds: {', '.join(OUTPUT_KINDS)}")
    outputs = []
    for ref_name, cand_name in pairs:
        r = np.asarray(ref_out[ref_name])
        c = np.asarray(cand_out[cand_name])
        if r.shape != c.shape and r.size == c.size:
            c = c.reshape(r.shape)  # e.g. (N,) vs (N,1): same values, different rank
        if r.shape != c.shape:
            m = {"finite": True}
            checks = [Check("shape_mismatch", float(c.size), float(r.size), False)]
            outputs.append(OutputParity(ref_name, cand_name, list(r.shape), m, checks))
            continue
        m = output_metrics(r, c)
        checks = _checks(r, c, m, tolerance)
        kind = kinds.get(ref_name) or kinds.get(cand_name)
        how = "declared"
        if kind is None and "agreement" not in m:
            kind, how = infer_kind(ref_name, r)
        if kind and m.get("finite", True) and "agreement" not in m:
            m["kind"], m["kind_source"] = kind, how
            m.update(kind_metrics(kind, r, c, precision))
            checks += _kind_checks(kind, m, tolerance)
        outputs.append(OutputParity(ref_name, cand_name, list(r.shape), m, checks))
    notes = list(notes or []) + _kind_notes(outputs)
    accuracy = None
    first = np.asarray(ref_out[pairs[0][0]]) if pairs else None
    if labels is not None and first is not None and len(labels) == len(first):
        cand_first = np.asarray(cand_out[pairs[0][1]]).reshape(first.shape)
        lab = np.asarray(labels).reshape(-1)
        right_r = _predicted_labels(first) == lab
        right_c = _predicted_labels(cand_first) == lab
        n = len(lab)
        acc_r, acc_c = float(np.mean(right_r)), float(np.mean(right_c))
        lost, won = int((right_r & ~right_c).sum()), int((~right_r & right_c).sum())
        lo, hi = wilson(lost, n)
        # the drop is (lost - won) / n; its 95% interval comes from the Wilson interval of `lost`
        drop_ci = [lo - won / n, hi - won / n]
        accuracy = {"reference": acc_r, "candidate": acc_c, "delta": acc_c - acc_r, "samples": n,
                    "reference_ci95": list(wilson(int(right_r.sum()), n)),
                    "candidate_ci95": list(wilson(int(right_c.sum()), n)),
                    "lost": lost, "won": won, "drop_ci95": drop_ci}
        if tolerance.max_accuracy_drop is not None:
            # a drop fails only when its whole interval is above the allowance: one label in 48
            # flipping is within noise; the same drop measured on enough samples is not
            accuracy["ok"] = drop_ci[0] <= tolerance.max_accuracy_drop + 1e-12
            accuracy["samples_for_gate"] = samples_for_gate(tolerance.max_accuracy_drop)
    return ParityReport(precision, tolerance, len(first) if first is not None else 0, data_source,
                        outputs, notes, accuracy)


def _kind_notes(outputs: list[OutputParity]) -> list[str]:
    """Say how each kind was inferred, and what the margin rule left unjudged."""
    notes = []
    inferred = [f"{o.name}: {o.metrics['kind']} ({o.metrics['kind_source']})" for o in outputs
                if o.metrics.get("kind") and o.metrics.get("kind_source") != "declared"]
    if inferred:
        notes.append("output kinds inferred (declare with --output-kind NAME=KIND): " + "; ".join(inferred))
    for o in outputs:
        amb = o.metrics.get("ambiguous") or o.metrics.get("ambiguous_positions")
        if amb:
            what = "samples" if "ambiguous" in o.metrics else "positions"
            notes.append(f"{o.name}: {amb} {what} have their top two classes within the precision's noise; "
                         "top-1 is judged on the others")
        if o.metrics.get("note"):
            notes.append(f"{o.name}: {o.metrics['note']}")
    return notes


def check(reference, candidate, data, *, precision: str, tolerance: Tolerance,
          kinds: dict | None = None) -> ParityReport:
    """Run both runners on the same data set and compare (inside a child process)."""
    from edgekit.progress import progress

    mapping = align_inputs(reference.signature, candidate.signature)
    pairs, notes = align_outputs(reference.signature, candidate.signature)
    if any(a != b for a, b in mapping.items()) and len(mapping) > 1:
        notes.append("inputs matched by position (names differ): " +
                     ", ".join(f"{a}→{b}" for a, b in mapping.items()))
    for name in (n for n in reference.signature.input_names if n not in mapping):
        values = np.unique(np.asarray(data.arrays[name]))
        notes.append(f"scalar input '{name}' is fixed inside the artifact (the converter specialized it); "
                     f"the reference ran with {name}={', '.join(map(str, values[:5]))}")
    progress(f"running the reference ({reference.runtime}) on {data.n} samples")
    axes = getattr(data, "axes", None) or {}  # inputs batched on another axis, scalars
    ref_out = reference.predict(data.arrays, **({"axes": axes} if axes else {}))
    progress(f"running the candidate ({candidate.runtime}) on {data.n} samples")
    cand_axes = {mapping[k]: a for k, a in axes.items() if k in mapping}
    cand_out = candidate.predict({mapping[k]: v for k, v in data.arrays.items() if k in mapping},
                                 **({"axes": cand_axes} if cand_axes else {}))
    notes += [n for n in candidate.notes if n not in notes]
    return compare(ref_out, cand_out, pairs, tolerance, precision=precision, data_source=data.source,
                   labels=data.labels, notes=notes, kinds=kinds)
