"""Parity: does the candidate artifact compute what the reference model computes?

Both run on the same inputs; each output gets metrics (max/mean abs error, max relative
error, cosine similarity, SNR, top-1 agreement for classifier-shaped outputs, accuracy
when labels are given) and is judged against a tolerance preset. NaN or Inf in either
side never passes. Results are plain data; a report is truthy when it passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgekit.errors import BadInput
from edgekit.targets import Tolerance
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
            parts.append(f"accuracy drop {-self.accuracy['delta'] * 100:.2f} points "
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
    if _classifier_shaped(ref):
        m["top1"] = float(np.mean(ref.argmax(-1) == cand.argmax(-1)))
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
    if tol.min_top1 is not None and "top1" in m:
        checks.append(Check("min_top1", m["top1"], tol.min_top1, m["top1"] >= tol.min_top1))
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
    """Map reference input names to candidate input names: by name, else by position."""
    ref_names = ref_sig.input_names
    cand_names = cand_sig.input_names
    if set(ref_names) <= set(cand_names):
        return {n: n for n in ref_names}
    if len(ref_names) == len(cand_names):
        return dict(zip(ref_names, cand_names))
    raise BadInput(f"the reference takes {len(ref_names)} inputs ({', '.join(ref_names)}) but the candidate "
                   f"takes {len(cand_names)} ({', '.join(cand_names)}).",
                   hint="check that the artifact was converted from this source model")


def compare(ref_out: dict, cand_out: dict, pairs: list[tuple[str, str]], tolerance: Tolerance, *,
            precision: str, data_source: str, labels: np.ndarray | None = None,
            notes: list[str] | None = None) -> ParityReport:
    """Judge candidate outputs against reference outputs."""
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
        outputs.append(OutputParity(ref_name, cand_name, list(r.shape), m, _checks(r, c, m, tolerance)))
    accuracy = None
    first = np.asarray(ref_out[pairs[0][0]]) if pairs else None
    if labels is not None and first is not None and len(labels) == len(first):
        cand_first = np.asarray(cand_out[pairs[0][1]]).reshape(first.shape)
        lab = np.asarray(labels).reshape(-1)
        acc_r = float(np.mean(_predicted_labels(first) == lab))
        acc_c = float(np.mean(_predicted_labels(cand_first) == lab))
        accuracy = {"reference": acc_r, "candidate": acc_c, "delta": acc_c - acc_r}
        if tolerance.max_accuracy_drop is not None:
            accuracy["ok"] = (acc_r - acc_c) <= tolerance.max_accuracy_drop + 1e-12
    return ParityReport(precision, tolerance, len(first) if first is not None else 0, data_source,
                        outputs, list(notes or []), accuracy)


def check(reference, candidate, data, *, precision: str, tolerance: Tolerance) -> ParityReport:
    """Run both runners on the same data set and compare (inside a child process)."""
    from edgekit.isolation import progress

    mapping = align_inputs(reference.signature, candidate.signature)
    pairs, notes = align_outputs(reference.signature, candidate.signature)
    if any(a != b for a, b in mapping.items()) and len(mapping) > 1:
        notes.append("inputs matched by position (names differ): " +
                     ", ".join(f"{a}→{b}" for a, b in mapping.items()))
    progress(f"running the reference ({reference.runtime}) on {data.n} samples")
    ref_out = reference.predict(data.arrays)
    progress(f"running the candidate ({candidate.runtime}) on {data.n} samples")
    cand_out = candidate.predict({mapping[k]: v for k, v in data.arrays.items()})
    notes += [n for n in candidate.notes if n not in notes]
    return compare(ref_out, cand_out, pairs, tolerance, precision=precision, data_source=data.source,
                   labels=data.labels, notes=notes)
