"""docs/configuration.md's table of environment keys, rendered from ``Settings``' fields.

The model is the one source: each field's environment key, description and default. A test
(vector_pipeline_tests/test_config.py) checks the docs hold this table; after changing a
setting, rewrite it with ``python -m devtools.settings_table``.
"""

from __future__ import annotations

from pathlib import Path

from vector_pipeline.config import Settings
from vector_pipeline.environment import SERVICE_ENDPOINT_PREFIX, aliases, render

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
START, END = "<!-- settings table: python -m devtools.settings_table -->", "<!-- end of the settings table -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table() -> str:
    rows = ["| key | meaning | default |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        keys = aliases(field.validation_alias) or [f"{SERVICE_ENDPOINT_PREFIX}<SERVICE>"]
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        default = extra.get("shown") or ("unset" if field.default in (None, ()) else f"`{render(field.default)}`")
        rows.append(f"| {' / '.join(f'`{key}`' for key in keys)} | {_cell(field.description or name)} | {_cell(str(default))} |")
    return "\n".join(rows)


def documented() -> str:
    """The table as docs/configuration.md holds it now."""
    text = DOCS.read_text()
    return text[text.index(START) + len(START):text.index(END)].strip()


def write() -> None:
    text = DOCS.read_text()
    DOCS.write_text(text[:text.index(START) + len(START)] + "\n\n" + table() + "\n\n" + text[text.index(END):])


if __name__ == "__main__":
    write()
