"""Share indexes on the Hugging Face Hub: :class:`~rank.retrieve.BM25`,
:class:`~rank.retrieve.SparseIndex` and :class:`~rank.DenseIndex`, pushed and pulled.

The index classes call :func:`push` from ``save_to_hub`` and :func:`pull` from
``load_from_hub``; both need the ``hub`` extra (``pip install "rank-kernels[hub]"``, i.e.
huggingface-hub), imported only when called.

A repository holds exactly what the class's own ``save`` writes, plus two generated files::

    rank_kernels_index.json   what the repository holds: library, class, format version, the
                              index's files with their size and SHA-256, corpus size, settings
    README.md                 the model card: Hub metadata (library_name, tags), corpus size,
                              settings and how to load it
    index/                    BM25 / SparseIndex: the saved directory (.npy arrays + JSON)
    index.rkd                 DenseIndex: the saved file (a header and the raw vectors, or a
                              checksummed FAISS index for the approximate kinds)

Nothing is pickled and no code is run: a repository is read as data. Loading downloads
``rank_kernels_index.json`` first, refuses with :class:`rank.errors.CorruptFileError` a
repository that lacks it, was written for another class or lists unexpected file names, then
downloads only the listed files of the same commit through the huggingface-hub cache
(``HF_HUB_OFFLINE=1`` reads the cache only), checks their sizes and (``verify=True``) SHA-256
digests, and hands them to the class's own ``load``, which validates everything its kernels
trust. The cache stores files as links to content-addressed blobs; the loaders accept plain
files only, so those are hard-linked (or, across file systems, copied) into a private
directory for the load, which memory-maps them as usual.

Both functions are safe to call from several threads at once (each works in its own
temporary directory).

>>> from rank.retrieve import BM25
>>> BM25.load_from_hub("not a repo id!")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
rank.errors.InvalidValueError: repo_id: expected a Hub repository id 'owner/name', got 'not a repo id!'
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Optional

from rank._version import __version__
from rank.errors import CorruptFileError, InvalidValueError, MissingDependencyError, ModelNotFoundError

__all__ = ["CONFIG_NAME", "FORMAT", "FORMAT_VERSION", "push", "pull", "render_model_card"]

#: The file naming a repository as a rank-kernels index.
CONFIG_NAME = "rank_kernels_index.json"
FORMAT = "rank-kernels.hub-index"
FORMAT_VERSION = 1
#: Where each class's saved index lives in the repository, and whether it is a directory.
_LAYOUT = {"BM25": ("index", True), "SparseIndex": ("index", True), "DenseIndex": ("index.rkd", False)}
_IMPORT = {"BM25": "from rank.retrieve import BM25", "SparseIndex": "from rank.retrieve import SparseIndex",
           "DenseIndex": "from rank import DenseIndex"}
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_CONFIG_BYTES = 16 << 20
_OFFLINE = ("1", "true", "yes", "on")


def _hub() -> Any:
    """huggingface_hub, or MissingDependencyError with the install hint."""
    try:
        return importlib.import_module("huggingface_hub")
    except ImportError as e:
        raise MissingDependencyError(f"sharing indexes on the Hugging Face Hub needs the Python package "
                                     f"'huggingface_hub' ({e}): install rank-kernels[hub]") from None


def _kind(cls: type) -> str:
    for base in cls.__mro__:
        if base.__name__ in _LAYOUT and base.__module__.startswith("rank."):
            return base.__name__
    raise InvalidValueError(f"{cls.__name__}: not an index class that can be shared on the Hub "
                            f"(expected one of {', '.join(_LAYOUT)})")


def _check_repo_id(repo_id: Any) -> str:
    if not isinstance(repo_id, str) or not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or "--" in repo_id:
        raise InvalidValueError(f"repo_id: expected a Hub repository id 'owner/name', got {repo_id!r}")
    return repo_id


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _settings(kind: str, root: str, rel: str) -> tuple[int, dict[str, Any]]:
    """(number of documents, settings for the card) of a saved index."""
    if kind == "DenseIndex":
        from rank.retrieve.dense import DenseIndex

        d = DenseIndex.load(os.path.join(root, rel), mmap=True)
        return len(d), {"dim": d.dim, "metric": d.metric, "dtype": d.dtype.name, "index": d.index}
    with open(os.path.join(root, rel, "meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    keys = ("method", "k1", "b", "delta", "n_terms", "avgdl", "kind", "tokenizer") if kind == "BM25" else ("n_terms",)
    return int(meta["n_docs"]), {k: meta[k] for k in keys if k in meta}


def render_model_card(config: dict[str, Any], repo_id: str, description: Optional[str] = None) -> str:
    """The README.md of an index repository: Hub metadata in its YAML header, then the corpus
    size, the settings, how to load it and what the files are. Pure text; O(size of the settings).

    >>> card = render_model_card({"class": "BM25", "n_docs": 3, "library_version": "1.0", "settings": {"k1": 1.2},
    ...                    "files": {"index/meta.json": {"size": 10, "sha256": "0" * 64}}}, "me/idx")
    >>> "BM25.load_from_hub(\\"me/idx\\")" in card and "| k1 | `1.2` |" in card
    True
    """
    kind = config["class"]
    tags = ["rank-kernels", "retrieval", kind.lower()]
    header = "\n".join(["---", "library_name: rank-kernels", "tags:", *(f"- {t}" for t in tags), "---"])
    rows = "\n".join(f"| {k} | `{json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v}` |"
                     for k, v in config.get("settings", {}).items())
    total = sum(int(f["size"]) for f in config["files"].values())
    what = {"BM25": "a BM25 lexical index", "SparseIndex": "a learned-sparse (SPLADE-style) inverted index",
            "DenseIndex": "a dense vector index"}[kind]
    parts = [header, "", f"# {repo_id}", "",
             f"{what[0].upper() + what[1:]} of **{config['n_docs']:,} documents**, saved with rank-kernels "
             f"{config['library_version']} (`{kind}`).", ""]
    if description:
        parts += [description.strip(), ""]
    parts += ["## Load it", "", "```bash", 'pip install "rank-kernels[hub]"', "```", "", "```python",
              _IMPORT[kind], "", f"index = {kind}.load_from_hub(\"{repo_id}\")", "```", "",
              "Loading reads the files below as data (NumPy arrays and JSON, never pickle), checks their "
              "SHA-256 digests and validates the index before use; `HF_HUB_OFFLINE=1` loads from the local "
              "cache.", "", "## Settings", "", "| setting | value |", "| --- | --- |",
              f"| documents | `{config['n_docs']}` |", rows, "",
              "## Files", "", f"`{CONFIG_NAME}` describes the repository; the index itself takes "
              f"{len(config['files'])} files, {total:,} bytes:", ""]
    parts += [f"- `{name}` ({int(f['size']):,} bytes)" for name, f in sorted(config["files"].items())]
    return "\n".join(p for p in parts if p is not None) + "\n"


def push(index: Any, repo_id: str, *, token: Optional[str] = None, private: Optional[bool] = None,
         revision: Optional[str] = None, commit_message: Optional[str] = None, create_pr: bool = False,
         model_card: bool = True, description: Optional[str] = None) -> Any:
    """Save `index` and upload it to Hub repository `repo_id` in one commit (see the module
    docstring for the layout); called by ``save_to_hub``. The model repository is created if
    it does not exist (``private`` as given, else the Hub's default); files of an index
    uploaded there before that the new one lacks are deleted in the same commit, while other
    files are left alone (a README.md is replaced by the generated card unless
    ``model_card=False``; `description` adds a paragraph to it).

    Returns what ``HfApi.upload_folder`` returns (a ``CommitInfo``: the commit URL as a str,
    with ``oid``). Cost: one ``save`` into a temporary directory, one SHA-256 pass over the
    files, then the upload.
    """
    kind = _kind(type(index))
    repo_id = _check_repo_id(repo_id)
    hub = _hub()
    rel, is_dir = _LAYOUT[kind]
    with tempfile.TemporaryDirectory(prefix="rank-kernels-hub-") as tmp:
        target = os.path.join(tmp, rel)
        index.save(target)
        names = sorted(f"{rel}/{n}" for n in os.listdir(target)) if is_dir else [rel]
        files = {n: {"size": os.path.getsize(os.path.join(tmp, n)), "sha256": _sha256(os.path.join(tmp, n))}
                 for n in names}
        n_docs, settings = _settings(kind, tmp, rel)
        config = {"format": FORMAT, "format_version": FORMAT_VERSION, "library": "rank-kernels",
                  "library_version": __version__, "class": kind, "path": rel, "n_docs": n_docs,
                  "settings": settings, "files": files}
        with open(os.path.join(tmp, CONFIG_NAME), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, ensure_ascii=False)
            f.write("\n")
        if model_card:
            with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
                f.write(render_model_card(config, repo_id, description))
        api = hub.HfApi(token=token)
        api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        return api.upload_folder(
            repo_id=repo_id, folder_path=tmp, repo_type="model", revision=revision, create_pr=create_pr,
            commit_message=commit_message or f"Upload a rank-kernels {kind} index of {n_docs} documents",
            delete_patterns=[f"{_LAYOUT['BM25'][0]}/*", _LAYOUT["DenseIndex"][0], CONFIG_NAME])


def _offline(hub: Any) -> bool:
    """HF_HUB_OFFLINE as set now, or as huggingface-hub read it at its import."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _OFFLINE:
        return True
    try:
        return bool(importlib.import_module(hub.__name__ + ".constants").HF_HUB_OFFLINE)
    except (ImportError, AttributeError):
        return False


def _download(hub: Any, repo_id: str, revision: Optional[str], patterns: list[str], token: Any,
              cache_dir: Any, offline: bool) -> str:
    try:
        return str(hub.snapshot_download(repo_id, repo_type="model", revision=revision, allow_patterns=patterns,
                                         token=token, cache_dir=cache_dir, local_files_only=offline))
    except Exception as e:  # not found, offline cache miss, no network, bad revision: one clear error
        where = "the huggingface-hub cache (HF_HUB_OFFLINE is set)" if offline else "the Hub or its cache"
        raise ModelNotFoundError(f"index {repo_id!r}{'' if revision is None else f' (revision {revision!r})'}: "
                                 f"not found in {where} ({type(e).__name__}: {e})") from None


def _read_config(path: Path, where: str, kind: str) -> dict[str, Any]:
    """The validated rank_kernels_index.json of a snapshot; CorruptFileError for anything else."""
    if not path.is_file():
        raise CorruptFileError(f"{where}: not a rank-kernels index (no {CONFIG_NAME}; an index is shared with "
                               f"{kind}.save_to_hub)")
    try:
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            raise ValueError(f"larger than {_MAX_CONFIG_BYTES} bytes")
        config = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise CorruptFileError(f"{where}: {CONFIG_NAME} is not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CorruptFileError(f"{where}: {CONFIG_NAME} is not a rank-kernels index description")
    if config.get("format_version") != FORMAT_VERSION:
        raise CorruptFileError(f"{where}: unsupported index repository format version "
                               f"{config.get('format_version')!r} (this version reads {FORMAT_VERSION})")
    saved = config.get("class")
    if saved != kind:
        hint = f" (load it with {saved}.load_from_hub)" if saved in _LAYOUT else ""
        raise CorruptFileError(f"{where}: holds a {saved!r} index, not a {kind}{hint}")
    rel, is_dir = _LAYOUT[kind]
    files = config.get("files")
    if config.get("path") != rel or not isinstance(files, dict) or not files:
        raise CorruptFileError(f"{where}: {CONFIG_NAME} lists no index files under {rel!r} (corrupt repository)")
    for name, spec in files.items():
        inside = (isinstance(name, str) and name.startswith(rel + "/") and _FILE.fullmatch(name[len(rel) + 1:])
                  if is_dir else name == rel)
        ok = (isinstance(spec, dict) and isinstance(spec.get("size"), int) and not isinstance(spec["size"], bool)
              and spec["size"] >= 0 and isinstance(spec.get("sha256"), str) and _SHA256.fullmatch(spec["sha256"]))
        if not inside or not ok:
            raise CorruptFileError(f"{where}: {CONFIG_NAME} lists an unexpected file {name!r} (a {kind} index "
                                   f"keeps its files {'under ' + rel + '/' if is_dir else 'in ' + rel})")
    return config


def _resolve(snapshot: Path, name: str, spec: dict[str, Any], where: str, verify: bool) -> str:
    """The real path of a snapshot file after checking where it leads, its size and digest."""
    path = snapshot / name
    if not os.path.lexists(path):
        raise ModelNotFoundError(f"{where}: {name} is missing from the downloaded snapshot {snapshot} "
                                 "(an incomplete cache; download again online)")
    real = os.path.realpath(path)
    repo_root = os.path.realpath(snapshot.parent.parent)  # models--owner--name: snapshots/ and blobs/
    if os.path.commonpath([real, repo_root]) != repo_root:
        raise CorruptFileError(f"{where}: {name} leads outside the repository's cache folder")
    st = os.stat(real)
    if not stat.S_ISREG(st.st_mode):
        raise CorruptFileError(f"{where}: {name} is not a regular file")
    if st.st_size != spec["size"]:
        raise CorruptFileError(f"{where}: {name} has {st.st_size} bytes, {CONFIG_NAME} says {spec['size']} "
                               "(corrupt or incomplete download)")
    if verify and _sha256(real) != spec["sha256"]:
        raise CorruptFileError(f"{where}: {name}: SHA-256 mismatch with {CONFIG_NAME} (the file changed since "
                               "it was uploaded)")
    return real


def _stage(paths: dict[str, str], near: Path) -> str:
    """A private directory holding `paths` (name -> real file) as plain files: hard links where
    the file system allows, copies otherwise."""
    try:
        tmp = tempfile.mkdtemp(prefix=".rank-kernels-load-", dir=near)
    except OSError:  # a read-only cache
        tmp = tempfile.mkdtemp(prefix="rank-kernels-load-")
    try:
        for name, real in paths.items():
            dst = os.path.join(tmp, os.path.basename(name))
            try:
                os.link(real, dst)
            except OSError:
                shutil.copyfile(real, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def pull(cls: type, repo_id: str, *, revision: Optional[str] = None, mmap: bool = True, verify: bool = True,
         token: Optional[str] = None, cache_dir: Optional[str | os.PathLike] = None, **load_options: Any) -> Any:
    """Download the index of class `cls` from Hub repository `repo_id` and load it (see the
    module docstring); called by ``load_from_hub``.

    Raises ModelNotFoundError (a FileNotFoundError) when the repository or revision cannot be
    found, online or in the cache; CorruptFileError when it is not a rank-kernels index of
    this class or its files are inconsistent; MissingDependencyError without huggingface-hub.
    Cost: the download (once; later calls read the cache), one SHA-256 pass with `verify`,
    then the class's ``load``.
    """
    kind = _kind(cls)
    repo_id = _check_repo_id(repo_id)
    if revision is not None and (not isinstance(revision, str) or not revision):
        raise InvalidValueError(f"revision: expected a branch, tag or commit id string, got {revision!r}")
    hub = _hub()
    offline = _offline(hub)
    first = Path(_download(hub, repo_id, revision, [CONFIG_NAME], token, cache_dir, offline))
    commit = first.name  # the snapshot folder is named by the commit: read the rest from the same one
    where = f"Hub repository {repo_id!r} (commit {commit[:12]})"
    config = _read_config(first / CONFIG_NAME, where, kind)
    files = config["files"]
    snapshot = Path(_download(hub, repo_id, commit, sorted(files), token, cache_dir, offline))
    real = {name: _resolve(snapshot, name, spec, where, verify) for name, spec in files.items()}
    rel, is_dir = _LAYOUT[kind]
    staged = None
    try:
        if not is_dir:
            target = real[rel]
        elif all(real[n] == os.path.realpath(snapshot / n) and not os.path.islink(snapshot / n) for n in real) \
                and sorted(os.listdir(snapshot / rel)) == sorted(n[len(rel) + 1:] for n in real):
            target = str(snapshot / rel)  # plain files, nothing else beside them: load in place
        else:
            staged = _stage(real, snapshot.parent.parent)
            target = staged
        try:
            loader: Any = cls
            return loader.load(target, mmap=mmap, **load_options)
        except CorruptFileError as e:
            raise CorruptFileError(f"{where}: {str(e).replace(target, rel)}") from None
    finally:
        if staged is not None:  # loaded arrays keep their mapping; only the names go
            shutil.rmtree(staged, ignore_errors=True)
