"""The README guides and stays short; docs/ is in the repository and true to the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_is_a_short_guide_with_the_two_set_up_commands_first() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    commands = [line.split("#")[0].strip() for line in text.split("```bash", 1)[1]
                .split("```", 1)[0].strip().splitlines()]
    assert commands == ["pip install -e . && vnstitch demo", "bash scripts/test.sh"]


def test_every_relative_link_in_readme_and_docs_resolves() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    checked = 0
    for page in pages:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            checked += 1
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
    assert checked >= 10  # control: the links were found


def test_architecture_names_every_package() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    packages = sorted(p.parent.name for p in (ROOT / "src" / "vnstitch").glob("*/__init__.py"))
    assert {"model", "protocol", "sim", "cli"} <= set(packages)  # control: found the code
    missing = [p for p in packages if f"`vnstitch.{p}`" not in text]
    assert missing == []


def test_benchmarks_page_is_generated_from_the_recorded_results() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmarks_doc.py"),
                           "--check"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    for result in (ROOT / "benchmarks" / "results").glob("*.json"):
        assert f"## {result.stem}" in text
    assert text.count("```\n") >= 2 * len(list((ROOT / "benchmarks" / "results")
                                               .glob("*.json")))  # a command per file
