"""MkDocs hook: one API reference page per public module or subpackage of `rank`.

Pages are generated at build time from the source tree, so a module added to `rank` is
documented without editing the site configuration. A subpackage's page shows the package
docstring and then each public submodule in full (the names the package re-exports are
documented once, where they are defined). api/index.md links every page.
"""
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent


def _public_children(directory):
    """(name, is_package) of the public modules and packages directly in `directory`."""
    children = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith("_"):
            continue
        if path.is_dir() and (path / "__init__.py").is_file():
            children.append((path.name, True))
        elif path.suffix == ".py":
            children.append((path.stem, False))
    return children


def _block(module, **options):
    lines = [f"::: {module}", "    options:"]
    lines += [f"      {key}: {str(value).lower()}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


def _page(name, is_package):
    module = f"rank.{name}"
    parts = [f"# {module}\n"]
    submodules = _public_children(ROOT / "rank" / name) if is_package else []
    if not submodules:
        parts.append(_block(module, show_root_heading=False, show_submodules=True))
    else:
        parts.append(_block(module, show_root_heading=False, members=False))
        for sub, _ in submodules:
            parts.append(_block(f"{module}.{sub}", show_root_heading=True, heading_level=2,
                                show_submodules=True))
    return "\n".join(parts)


def on_files(files, config):
    children = _public_children(ROOT / "rank")
    for name, is_package in children:
        files.append(File.generated(config, f"api/{name}.md", content=_page(name, is_package)))
    index = ["# API reference", "",
             "Rendered from the docstrings. The most used names are also re-exported from",
             "`rank` itself ([rank](rank.md)).", ""]
    index += [f"- [`rank.{name}`]({name}.md)" for name, _ in children]
    index += ["- [`rank`](rank.md): the package and its re-exports", ""]
    files.append(File.generated(config, "api/index.md", content="\n".join(index)))
    files.append(File.generated(config, "api/rank.md",
                                content="# rank\n\n" + _block("rank", show_root_heading=False, members=False)))
    return files
