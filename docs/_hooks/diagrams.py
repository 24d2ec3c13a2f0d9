"""MkDocs hook: publish the committed lifecycle diagrams (``diagrams/*.svg``) with the site.

Pages link them as ``diagrams/train.svg`` (relative to the docs root); the files are
served from the repository's ``diagrams/`` folder, which a test keeps equal to what the
code renders, so the docs never hold a stale copy.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

DIAGRAMS = Path(__file__).resolve().parents[2] / "diagrams"


def on_files(files: Files, config: dict) -> Files:
    for svg in sorted(DIAGRAMS.glob("*.svg")):
        files.append(File.generated(config, f"diagrams/{svg.name}", abs_src_path=str(svg)))
    return files
