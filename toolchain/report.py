"""Reports: the JSON document every command can emit and the tables it prints.

JSON documents carry `schema_version`; bump it when a field changes meaning.
"""

from __future__ import annotations

import platform
import time

from edgekit import __version__
from edgekit.ui import fmt, human_bytes, mark, table

SCHEMA_VERSION = 1


def document(command: str, ok: bool, **body) -> dict:
    return {"schema_version": SCHEMA_VERSION, "tool": "edgekit", "edgekit_version": __version__,
            "command": command, "ok": ok, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": {"machine": platform.machine(), "python": platform.python_version()}, **body}


def parity_table(parity: dict, title: str | None = None):
    rows = []
    for o in parity["outputs"]:
        m = o["metrics"]
        failing = [c for c in o["checks"] if not c["ok"]]
        rows.append([o["name"], mark(o["passed"]), fmt(m.get("max_abs")), fmt(m.get("mean_abs")),
                     fmt(m.get("max_rel")), fmt(m.get("cosine"), 6), fmt(m.get("snr_db"), 4),
                     fmt(m.get("top1", m.get("agreement"))),
                     ", ".join(c["criterion"] for c in failing) or ""])
    tol = ", ".join(f"{k}={v:g}" for k, v in parity["tolerance"].items())
    caption = f"{parity['precision']} preset: {tol} · {parity['samples']} samples from {parity['data_source']}"
    acc = parity.get("accuracy")
    if acc:
        caption += (f" · accuracy {acc['reference'] * 100:.2f}% → {acc['candidate'] * 100:.2f}% "
                    f"({acc['delta'] * 100:+.2f} pts)")
    return table(title, ["output", "ok", "max abs", "mean abs", "max rel", "cosine", "SNR dB", "top-1", "failed"],
                 rows, caption=caption, caption_justify="left")


def parity_cells(parity: dict | None) -> list[str]:
    """Compact cells for a summary row: verdict, worst max-abs, worst cosine, top-1, accuracy delta."""
    if not parity:
        return ["-", "-", "-", "-", "-"]
    outs = parity["outputs"]
    max_abs = max((o["metrics"].get("max_abs", 0.0) for o in outs), default=None)
    cosine = min((o["metrics"].get("cosine", 1.0) for o in outs), default=None)
    top1 = [o["metrics"]["top1"] for o in outs if "top1" in o["metrics"]]
    acc = parity.get("accuracy")
    return [mark(parity["passed"]), fmt(max_abs), fmt(cosine, 6), fmt(min(top1)) if top1 else "-",
            f"{acc['delta'] * 100:+.2f}" if acc else "-"]


def signature_table(sig: dict, title: str):
    rows = []
    for kind in ("inputs", "outputs"):
        for t in sig[kind]:
            q = t.get("quantization")
            qs = ""
            if q:
                sc, zp = q["scale"], q["zero_point"]
                qs = f"scale={sc[0]:.4g} zp={zp[0]}" if len(sc) == 1 else f"per-axis {q['axis']} ({len(sc)} scales)"
            shape = "x".join("?" if d is None else str(d) for d in t["shape"]) or "scalar"
            rows.append([kind[:-1], t["name"], t["dtype"], shape, qs or "-"])
    return table(title, ["", "name", "dtype", "shape", "quantization"], rows)


def bytes_cell(n) -> str:
    return human_bytes(n)


def quantization_tables(details: dict) -> list:
    """Tables for a quantized ONNX result: the --quantize auto decision, and latency beside fp32."""
    tables = []
    auto = details.get("auto")
    if auto:
        rows = [[r["mode"], r["precision"], human_bytes(r["size_bytes"]) if "size_bytes" in r else "-",
                 fmt(r.get("median_ms")), mark(bool(r.get("passed"))), "chosen" if r.get("chosen") else "",
                 r.get("reason", "")] for r in auto]
        tables.append(table("--quantize auto: candidates (median ms, batch 1, this CPU)",
                            ["mode", "precision", "size", "median ms", "parity", "", "why"], rows))
    lat = details.get("latency_vs_fp32")
    if lat and lat.get("mode") != "none":
        tables.append(table("quantized vs fp32 on this CPU (median, batch 1)",
                            ["fp32 ms", f"{lat['mode']} ms", "ratio", "fp32 size", "quantized size"],
                            [[fmt(lat["fp32_ms"]), fmt(lat["quantized_ms"]), f"{lat['ratio']:.2f}x",
                              human_bytes(lat["fp32_size_bytes"]), human_bytes(lat["quantized_size_bytes"])]]))
    return tables
