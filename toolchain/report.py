"""Reports: the JSON document every command can emit and the tables it prints.

JSON documents carry `schema_version`; bump it when a field changes meaning.
"""

from __future__ import annotations

import json
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
        agree = next((m[k] for k in ("top1", "agreement", "position_top1", "det_recall") if k in m), None)
        rows.append([o["name"] + (f" ({m['kind']})" if m.get("kind") else ""), mark(o["passed"]),
                     fmt(m.get("max_abs")), fmt(m.get("mean_abs")),
                     fmt(m.get("max_rel")), fmt(m.get("cosine"), 6), fmt(m.get("snr_db"), 4), fmt(agree),
                     ", ".join(c["criterion"] for c in failing) or ""])
    tol = ", ".join(f"{k}={v:g}" for k, v in parity["tolerance"].items())
    caption = f"{parity['precision']} preset: {tol} · {parity['samples']} samples from {parity['data_source']}"
    acc = parity.get("accuracy")
    if acc:
        caption += (f" · accuracy {acc['reference'] * 100:.2f}% → {acc['candidate'] * 100:.2f}% "
                    f"({acc['delta'] * 100:+.2f} pts")
        if acc.get("drop_ci95"):
            lo, hi = acc["drop_ci95"]
            caption += f"; drop 95% interval {lo * 100:+.2f} to {hi * 100:+.2f} on {acc['samples']} samples"
        caption += ")"
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


def failure_line(parity: dict) -> str:
    """Every failing output and criterion of a parity report, in one line."""
    from edgekit.validators.parity import Check

    parts = []
    for o in parity["outputs"]:
        if not o["passed"]:
            bad = [Check(**c).describe() for c in o["checks"] if not c["ok"]]
            parts.append(f"output '{o['name']}': " + ", ".join(bad))
    acc = parity.get("accuracy")
    if acc and not acc.get("ok", True):
        parts.append(f"accuracy {acc['delta'] * 100:+.2f} points")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- build reports
BUILD_COLUMNS = ["model", "target", "precision", "status", "size", "parity", "max abs", "cosine", "top-1",
                 "acc Δ pts", "host ms", "arm64", "arm64 ms†", "arm64 instr/inf", "browser", "browser ms‡", "note"]
EMULATED_NOTE = "† arm64 latency is emulated under QEMU: relative only, not device speed"
BROWSER_NOTE = ("‡ browser latency: in-page performance.now() median in headless Chromium on the build machine, "
                "wasm/JS, 1 thread (per runtime: ORT Web for .onnx, TF.js wasm / cpu for TF.js folders)")


def web_cells(parities: dict, latencies: dict) -> tuple[str, str]:
    """The browser parity mark (every JS runtime) and its medians, from 'browser:runtime' keys."""
    keys = [k for k in parities if k.startswith("browser:")]
    if not keys:
        return "-", "-"
    ms = [f"{k.split(':', 1)[1]} {(latencies.get(k) or {}).get('median_ms') or 0:.3f}" for k in keys]
    return mark(all(parities[k]["passed"] for k in keys)), ", ".join(ms)


def build_row(row: dict) -> dict:
    """One flat record per job (shared by the table, Markdown, HTML and JUnit)."""
    entry = row.get("manifest") or {}
    extra = row.get("entry") or {}
    parity = (entry.get("parity") or extra.get("parity") or {}).get("host")
    lat = (entry.get("latency") or extra.get("latency") or {}).get("host")
    ident = row["id"]
    model, _, rest = ident.partition("/")
    target, _, precision = rest.partition("-")
    verdict, max_abs, cosine, top1, acc = parity_cells(parity)
    err = row.get("error") or {}
    arm_parity = (entry.get("parity") or extra.get("parity") or {}).get("arm64")
    arm_lat = (entry.get("latency") or extra.get("latency") or {}).get("arm64") or {}
    insns = entry.get("arm_instructions_per_inference") or extra.get("arm_instructions")
    web_parity, web_ms = web_cells(entry.get("parity") or extra.get("parity") or {},
                                   entry.get("latency") or extra.get("latency") or {})
    return {
        "id": ident, "model": model, "target": target, "precision": precision, "status": row["status"],
        "file": entry.get("file"), "size_bytes": entry.get("size_bytes"), "parity": parity, "latency": lat,
        "cells": [model, target, precision, row["status"], human_bytes(entry.get("size_bytes")), verdict, max_abs,
                  cosine, top1, acc, f"{lat['median_ms']:.3f}" if lat else "-",
                  mark(arm_parity["passed"]) if arm_parity else "-",
                  f"{arm_lat['median_ms']:.3f}" if arm_lat.get("median_ms") else "-",
                  f"{insns:,.0f}" if insns else "-", web_parity, web_ms,
                  (err.get("message") or "")[:160]],
        "error": err or None,
        # text models: the tokenizer that makes the ids, and parity/latency per sequence length
        **{k: entry.get(k) or extra.get(k) for k in ("tokenizer", "lengths") if entry.get(k) or extra.get(k)},
    }


STATUS_COLOURS = {"built": "green", "cached": "cyan", "checked": "green", "failed": "bold red", "refused": "yellow"}
# the terminal summary: these columns always (one line per job, its id never split) ...
_SUMMARY_ALWAYS = ["job", "status", "size", "parity", "host ms"]
# ... and these as the width allows, in this order (every column is in summary.md/report.html/--json)
_SUMMARY_OPTIONAL = ["arm64", "top-1", "arm64 ms†", "browser", "acc Δ pts", "arm64 instr/inf", "browser ms‡", "max abs",
                     "cosine", "precision"]


def fit_columns(header: list[str], rows: list[list[str]], always: list[str], optional: list[str],
                width: int) -> tuple[list[int], int]:
    """Indexes of the columns to print in `width` terminal cells, and the width they take: every
    `always` column (even past `width`: the caller widens), then `optional` ones in order while
    the table (borderless, two spaces between columns) still fits."""
    from rich.cells import cell_len

    def need(i: int) -> int:
        return max([cell_len(_plain(header[i]))] + [cell_len(_plain(r[i])) for r in rows]) + 2

    chosen = [header.index(c) for c in always]
    used = sum(need(i) for i in chosen) - 2
    for c in optional:
        i = header.index(c)
        if used + need(i) <= width:
            chosen.append(i)
            used += need(i)
    return sorted(chosen), used


def compact_table(title: str | None, header: list[str], rows: list[list[str]], keep: list[int],
                  caption: str | None = None, needed: int = 0):
    """A borderless table of the `keep` columns (chosen by fit_columns), one line per row:
    no cell is wrapped or cut (ui.show prints it `needed` wide if the terminal is narrower)."""
    from rich.cells import cell_len
    from rich.table import Table

    t = Table(title=title, title_justify="left", box=None, pad_edge=False, padding=(0, 1), caption=caption,
              caption_justify="left", header_style="bold underline")
    for i in keep:
        w = max([cell_len(_plain(header[i]))] + [cell_len(_plain(r[i])) for r in rows])
        t.add_column(header[i], no_wrap=True, min_width=w)
    for r in rows:
        t.add_row(*[str(r[i]) for i in keep])
    t.needed_width = needed
    return t


def build_table(result, title: str, width: int = 160):
    """The terminal summary: one line per job at any width >= 80; problems go below (problem_lines)."""
    header = ["job"] + BUILD_COLUMNS[1:16]
    rows = []
    for rec in (build_row(r) for r in result.rows):
        c = rec["cells"]
        colour = STATUS_COLOURS.get(c[3], "")
        status = f"[{colour}]{c[3]}[/]" if colour else c[3]
        rows.append([rec["id"], c[1], c[2], status] + c[4:16])
    keep, used = fit_columns(header, rows, _SUMMARY_ALWAYS, _SUMMARY_OPTIONAL, width)
    notes = [n for col, n in (("arm64 ms†", EMULATED_NOTE), ("browser ms‡", BROWSER_NOTE))
             if header.index(col) in keep and any(r[header.index(col)] != "-" for r in rows)]
    note = "\n".join(notes) or None
    return compact_table(title, header, rows, keep, caption=note, needed=used)


CONVERT_COLUMNS = ["artifact", "precision", "size", "parity", "top-1", "convert s", "max abs", "cosine", "target",
                   "source"]


def convert_summary(source: str, target: str, result: dict, parity: dict | None, width: int):
    """`edgekit convert`'s summary: one line, the artifact path whole; more columns as the width allows."""
    verdict, max_abs, cosine, top1, _ = parity_cells(parity)
    from rich.markup import escape  # file names are the user's: shown as text, never as markup

    row = [escape(result["output"] or "(not written)"), result["precision"], human_bytes(result["size_bytes"]),
           verdict, top1, f"{result['convert_seconds']:.1f}", max_abs, cosine, target, escape(source)]
    keep, used = fit_columns(CONVERT_COLUMNS, [row], CONVERT_COLUMNS[:4], CONVERT_COLUMNS[4:], width)
    return compact_table("edgekit convert", CONVERT_COLUMNS, [row], keep, needed=used)


def problem_lines(result) -> list[str]:
    """One whole line per failed or refused job (the full message, with what to do), for below
    the summary table. Plain text: print it unwrapped (soft wrap), never as a table cell."""
    lines = []
    for r in result.rows:
        err = r.get("error")
        if r["status"] not in ("failed", "refused") or not err:
            continue
        kind = "refused as expected" if r["status"] == "refused" else f"failed ({err.get('type', 'error')})"
        hint = f" · what to do: {err['hint']}" if err.get("hint") and r["status"] == "failed" else ""
        again = " · from the last build (same inputs and versions, not tried again; --force retries)" \
            if r.get("cached") and r["status"] == "failed" else ""
        lines.append(f"{'–' if r['status'] == 'refused' else '✗'} {r['id']} {kind}: {err.get('message', '')}{hint}{again}")
    return lines


def length_lines(result) -> list[str]:
    """One line per artifact checked at several sequence lengths (a model with `lengths`):
    parity, the artifact's accuracy and the host median at each length."""
    lines = []
    for r in result.rows:
        lengths = (r.get("manifest") or r.get("entry") or {}).get("lengths")
        if not lengths:
            continue
        cells = []
        for n in sorted(lengths, key=int):
            parity, lat = lengths[n]["parity"], lengths[n].get("latency")
            acc = parity.get("accuracy")
            cells.append(f"{n} tokens {'✓' if parity['passed'] else '✗ parity'}"
                         + (f" {acc['candidate'] * 100:.1f}%" if acc else "")
                         + (f" {lat['median_ms']:.3f} ms" if lat else ""))
        lines.append(f"  {r['id']} by sequence length: {' · '.join(cells)}")
    return lines


def _plain(cell: str) -> str:
    import re

    return re.sub(r"\[/?[a-z ]*\]", "", str(cell)).replace("|", "\\|")


# characters XML 1.0 does not allow at all (most C0 controls, lone surrogates, U+FFFE/U+FFFF)
_NOT_XML = "[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"


def _xml(text) -> str:
    """Text that a JUnit XML file can hold: forbidden characters (a file name's ESC, BEL, NUL)
    become U+FFFD; ElementTree escapes the rest."""
    import re

    return re.sub(_NOT_XML, "\ufffd", str(text))


def _md(cell) -> str:
    """A table cell for summary.md (rendered by GitHub as Markdown with inline HTML): control
    characters replaced, HTML escaped, Markdown's own syntax and the cell separator escaped, so a
    file name such as '<img src=x>' or '[a](b)' shows as text."""
    import html
    import re

    from edgekit.ui import strip_control

    text = re.sub(r"\[(?:green|bold red)\]([✓✗])\[/\]", r"\1", str(cell))  # mark()'s own styling only
    text = html.escape(strip_control(text), quote=False)
    return re.sub(r"([\\`*_{}\[\]()#+!|~])", r"\\\1", text).replace("\n", " ")


def summary_markdown(result, title: str = "edgekit build") -> str:
    recs = [build_row(r) for r in result.rows]
    failed = [r for r in recs if r["status"] == "failed"]
    head = f"## {title}: {'✅ passed' if not failed else f'❌ {len(failed)} of {len(recs)} failed'}\n\n"
    lines = ["| " + " | ".join(BUILD_COLUMNS) + " |", "|" + "---|" * len(BUILD_COLUMNS)]
    for r in recs:
        lines.append("| " + " | ".join(_md(c) for c in r["cells"]) + " |")
    tail = f"\n\n{len(recs)} jobs in {result.seconds:.1f} s · output: {_md(result.out)} · {EMULATED_NOTE} · {BROWSER_NOTE}\n"
    return head + "\n".join(lines) + tail


def junit_xml(result, suite: str = "edgekit") -> str:
    """One test case per model x target x arch check; failures carry the metric that failed.

    A parity failure fails its own arch's case; any other failure (conversion error, stale
    artifact, budget) fails the job's first case.
    """
    from xml.etree import ElementTree as ET

    cases = []  # (record, arch, failure message or None, failure detail)
    for r in (build_row(row) for row in result.rows):
        parities = ((result_entry(result, r["id"]) or {}).get("parity") or {})
        arches = list(parities) or ["host"]
        for k, arch in enumerate(arches):
            par = parities.get(arch)
            if par is not None and not par["passed"]:
                cases.append((r, arch, f"parity failed on {arch}: {failure_line(par)}", par))
            elif r["status"] == "failed" and k == 0 and all(p["passed"] for p in parities.values()):
                err = r["error"] or {}
                cases.append((r, arch, err.get("message", "failed"), err))
            else:
                cases.append((r, arch, None, None))
    failures = sum(1 for c in cases if c[2])
    ts = ET.Element("testsuite", name=_xml(suite), tests=str(len(cases)), failures=str(failures), errors="0",
                    time=f"{result.seconds:.3f}")
    for r, arch, message, detail in cases:
        tc = ET.SubElement(ts, "testcase", classname=_xml(f"edgekit.{r['model']}"),
                           name=_xml(f"{r['target']}-{r['precision']} [{arch}]"))
        if message:
            f = ET.SubElement(tc, "failure", message=_xml(message), type="CheckFailed")
            f.text = _xml(json.dumps(detail, indent=1, default=str)[:20000])
        elif r["status"] == "refused":  # expect = "refused": passes, shown as skipped with the reason
            ET.SubElement(tc, "skipped", message=_xml(f"refused as expected: {(r['error'] or {}).get('message', '')}"))
        elif r["parity"]:
            out = ET.SubElement(tc, "system-out")
            out.text = _xml(" ".join(f"{k}={_plain(v)}" for k, v in zip(BUILD_COLUMNS[5:14], r["cells"][5:14])))
    root = ET.Element("testsuites", tests=ts.get("tests"), failures=ts.get("failures"))
    root.append(ts)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def result_entry(result, ident: str) -> dict | None:
    for r in result.rows:
        if r["id"] == ident:
            return r.get("manifest") or r.get("entry")
    return None


def _svg_bars(title: str, items: list[tuple[str, float]], unit: str, colour: str) -> str:
    import html

    if not items:
        return ""
    width, bar_h, label_w = 760, 22, 260
    top = 28
    height = top + bar_h * len(items) + 10
    vmax = max(v for _, v in items) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{html.escape(title)}">',
             f'<text x="0" y="18" font-size="15" font-weight="bold">{html.escape(title)}</text>']
    for k, (label, v) in enumerate(items):
        y = top + k * bar_h
        w = (width - label_w - 90) * (v / vmax)
        parts.append(f'<text x="{label_w - 8}" y="{y + 15}" font-size="12" text-anchor="end">{html.escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{bar_h - 6}" fill="{colour}"/>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12">{v:.3g} {unit}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def report_html(result, title: str = "edgekit build report") -> str:
    """A self-contained page: summary table plus latency and size charts (inline SVG, no scripts)."""
    import html

    recs = [build_row(r) for r in result.rows]
    lat = [(r["id"], r["latency"]["median_ms"]) for r in recs if r["latency"]]
    size = [(r["id"], r["size_bytes"] / 1024) for r in recs if r["size_bytes"]]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in BUILD_COLUMNS)
    body = "\n".join("<tr class='{}'>{}</tr>".format(
        html.escape(r["status"]), "".join(f"<td>{html.escape(_plain(c))}</td>" for c in r["cells"])) for r in recs)
    failed = sum(r["status"] == "failed" for r in recs)
    verdict = "all checks passed" if not failed else f"{failed} of {len(recs)} jobs failed"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
th {{ background: #f0f0f0; }}
tr.failed td {{ background: #fde8e8; }}
.verdict {{ font-size: 1.2em; font-weight: bold; color: {'#1a7f37' if not failed else '#b42318'}; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="verdict">{html.escape(verdict)}</p>
<p>{len(recs)} jobs · {result.seconds:.1f} s · edgekit {__version__} · output <code>{html.escape(str(result.out))}</code></p>
<table><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table>
{_svg_bars("Host latency, median (ms, batch 1)", lat, "ms", "#2f6fdf")}
{_svg_bars("Size on disk (KB)", size, "KB", "#7a4fd6")}
</body></html>
"""


def write_build_reports(folder, result) -> None:
    """report.json, junit.xml, summary.md and report.html, written atomically into `folder`."""
    import json as _json
    from pathlib import Path

    from edgekit.fsutil import write_text_atomic

    folder = Path(folder)
    recs = [build_row(r) for r in result.rows]
    doc = document("build", all(r["status"] != "failed" for r in recs), seconds=result.seconds,
                   output=str(result.out),
                   jobs=[{k: v for k, v in r.items() if k != "cells"} for r in recs])
    write_text_atomic(folder / "report.json", _json.dumps(doc, indent=2, default=str))
    write_text_atomic(folder / "junit.xml", junit_xml(result))
    write_text_atomic(folder / "summary.md", summary_markdown(result))
    write_text_atomic(folder / "report.html", report_html(result))


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
