"""The documentation site builds with ``mkdocs build --strict`` (mkdocs.yml, docs/,
mkdocs_hooks.py), its API pages are rendered from the docstrings, and the strict build does
fail on a broken link, a page missing from the nav, or a nav entry without its page.

Each build takes several seconds (mkdocstrings reads the sources), hence ``slow``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e '.[docs]'")
pytest.importorskip("material", reason="mkdocs-material is not installed: pip install -e '.[docs]'")
pytest.importorskip("mkdocstrings_handlers.python",
                    reason="mkdocstrings-python is not installed: pip install -e '.[docs]'")


def build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of the project at ``project`` into ``site``, run from
    elsewhere (``site``'s parent): paths in mkdocs.yml are relative to the file."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's end-of-life banner
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(project / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=site.parent, capture_output=True, text=True, timeout=300, env=env,
    )


def copy_project(dest: Path) -> Path:
    """mkdocs.yml, the hook, docs/ and what the site brings in from outside docs/ (the
    sources for mkdocstrings, BENCHMARKS.md and its images) in ``dest``."""
    for name in ("mkdocs.yml", "mkdocs_hooks.py", "BENCHMARKS.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "docs", dest / "docs")
    shutil.copytree(ROOT / "src", dest / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for image in ("benchmarks/results/loss_scaling.png", "benchmarks/self_supervised/study.png"):
        if (ROOT / image).exists():
            (dest / image).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / image, dest / image)
    return dest


def text_of(page: Path) -> str:
    return page.read_text(encoding="utf-8")


@pytest.mark.slow
def test_site_builds_strict_with_api_pages(tmp_path):
    site = tmp_path / "site"
    proc = build(ROOT, site)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    # every guide is a page
    for page in ("training", "evaluation", "self_supervised", "using_encoders", "extending",
                 "reliability", "tutorials", "examples", "reports/digits",
                 "reports/cifar10-short", "repository/BENCHMARKS"):
        assert (site / page / "index.html").is_file(), page
    assert "Quickstart" in text_of(site / "index.html")

    # the API pages hold the rendered docstrings
    losses = text_of(site / "api" / "losses" / "index.html")
    assert 'id="varcon.losses.VarConLoss"' in losses
    assert "Variational supervised contrastive loss" in losses  # VarConLoss's docstring
    assert 'id="varcon.losses.varcon_loss"' in losses
    ssl = text_of(site / "api" / "self_supervised" / "index.html")
    assert 'id="varcon.losses.self_supervised.VarConSSLLoss"' in ssl
    assert 'id="varcon.losses.self_supervised.NTXentLoss"' in ssl
    encoders = text_of(site / "api" / "encoders" / "index.html")
    assert "varcon.load_encoder" in encoders and "weights_only=True" in encoders
    evaluation = text_of(site / "api" / "evaluation" / "index.html")
    for name in ("knn.knn_evaluate", "linear.train_linear_probe", "clustering.clustering_scores",
                 "fewshot.fewshot_evaluate", "registry.register_protocol"):
        assert f'id="varcon.evaluation.{name}"' in evaluation, name
    for page in (losses, ssl, encoders, evaluation):
        assert ":func:" not in page and ":class:" not in page  # Sphinx roles cleaned

    # links that leave docs/ point at the copies the hook brings into the site
    assert 'href="../repository/BENCHMARKS/"' in text_of(site / "evaluation" / "index.html")
    assert (site / "repository" / "benchmarks" / "results" / "loss_scaling.png").is_file()
    # the tutorials page shows its scripts (site-only blocks, pymdownx.snippets)
    assert "VarConLoss" in text_of(site / "tutorials" / "index.html")


# (file, text appended to it, what the strict build's output must say about it)
BREAKAGES = [
    ("docs/training.md", "\nSee [nowhere](no_such_page.md).\n",
     "contains a link 'no_such_page.md', but the target is not found"),
    ("docs/evaluation.md", "\nSee [gone](../NO_SUCH_FILE.md).\n",
     "contains a link '../NO_SUCH_FILE.md', but the target"),
    ("docs/reliability.md", "\nSee [there](evaluation.md#no-such-heading).\n",
     "does not contain an anchor '#no-such-heading'"),
    ("docs/orphan.md", "# A page missing from the nav\n", "- orphan.md"),
    ("BENCHMARKS.md", "\nSee [gone](benchmarks/NO_SUCH_FILE.md).\n",
     "contains a link 'benchmarks/NO_SUCH_FILE.md', but the target"),
    ("mkdocs.yml", "", "'no_such_nav_page.md' is included in the 'nav' configuration"),
]


@pytest.mark.slow
def test_strict_build_fails_on_broken_links_and_nav(tmp_path):
    """One build of a copy of the project with every breakage at once: strict mode reports
    each of them, then aborts."""
    project = tmp_path / "project"
    project.mkdir()
    copy_project(project)
    for name, text, _ in BREAKAGES:
        with open(project / name, "a", encoding="utf-8") as f:
            f.write(text)
    config = project / "mkdocs.yml"
    nav_entry = "      - Reliability: reliability.md\n"
    assert nav_entry in config.read_text(encoding="utf-8")
    config.write_text(config.read_text(encoding="utf-8").replace(
        nav_entry, nav_entry + "      - Missing: no_such_nav_page.md\n"), encoding="utf-8")

    proc = build(project, tmp_path / "site")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-5000:]
    # one warning per breakage and no other: the copy is otherwise sound
    assert f"Aborted with {len(BREAKAGES)} warnings in strict mode" in output, output[-5000:]
    warnings = [record for record in re.split(r"\n(?=[A-Z]+ +-  )", output)
                if record.startswith(("WARNING", "ERROR"))]
    for name, _, message in BREAKAGES:
        assert any(message in record for record in warnings), (
            f"{name}: no warning says {message!r}:\n{output[-5000:]}")


def test_hook_finds_the_links_a_page_makes(monkeypatch):
    """mkdocs_hooks reads links as Markdown does: link text may wrap, targets may be in <>,
    and fenced code holds no links."""
    monkeypatch.syspath_prepend(str(ROOT))
    import mkdocs_hooks

    markdown = ("See the [bench\nmarks](../BENCHMARKS.md \"title\") and ![a plot](<a b.png>).\n\n"
                "```python\nx = [a](../NOT_A_LINK.md)\n```\n"
                "[here](#anchor), [there](https://example.org), [a guide](training.md#a-section)\n")
    assert mkdocs_hooks._outside_links(markdown) == ["../BENCHMARKS.md", "a b.png", "training.md"]
