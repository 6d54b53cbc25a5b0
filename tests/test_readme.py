"""The README's promises: the two commands first, and a conversion matrix equal to the registry."""

import re
from pathlib import Path

from edgekit.converters.registry import paths
from edgekit.targets import TARGETS

README = Path(__file__).resolve().parents[1] / "README.md"


def test_first_lines_give_the_two_commands():
    head = README.read_text().splitlines()[:6]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)


def _matrix() -> dict[tuple[str, str], set[str]]:
    text = README.read_text()
    block = text[text.index("<!-- matrix:start -->"):text.index("<!-- matrix:end -->")]
    rows = [r for r in block.splitlines() if r.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    out = {}
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        source = re.search(r"\(`([a-z_]+)`\)", cells[0]).group(1)
        for target, cell in zip(header[1:], cells[1:]):
            if cell not in ("–", "-", ""):
                out[(source, target)] = set(cell.split())
    return out


def test_matrix_matches_the_registry():
    registered = {(c.source, c.target): {"fp32" if q == "none" else q for q in c.quantize if q != "auto"}
                  for c in paths()}
    assert _matrix() == registered
    assert {t for _, t in registered} <= set(TARGETS)


def test_matrix_has_a_column_per_declared_target():
    text = README.read_text()
    header = text[text.index("<!-- matrix:start -->"):].splitlines()[1]
    assert [c.strip() for c in header.strip("|").split("|")][1:] == list(TARGETS)
