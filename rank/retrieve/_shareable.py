"""The Hub methods every shareable index class has (:class:`HubShareable`): thin wrappers of
:func:`rank.retrieve.hub.push` / :func:`~rank.retrieve.hub.pull`, which hold the logic and
import huggingface-hub only when called."""
from __future__ import annotations

import os
from typing import Any, Optional, TypeVar, Union

__all__ = ["HubShareable"]

_T = TypeVar("_T", bound="HubShareable")


class HubShareable:
    """Mixin: ``save_to_hub`` / ``load_from_hub`` for an index class with ``save`` and ``load``
    (BM25, SparseIndex, DenseIndex)."""

    __slots__ = ()

    def save_to_hub(self, repo_id: str, *, token: Optional[str] = None, private: Optional[bool] = None,
                    revision: Optional[str] = None, commit_message: Optional[str] = None, create_pr: bool = False,
                    model_card: bool = True, description: Optional[str] = None) -> Any:
        """Upload this index to Hugging Face Hub repository `repo_id` (extra ``hub``).

        The repository receives what :meth:`save` writes (a directory ``index/``, or the file
        ``index.rkd`` of a DenseIndex), a ``rank_kernels_index.json`` describing it (class,
        format version, each file's size and SHA-256, corpus size, settings) and a generated
        README.md model card (Hub metadata, corpus size, settings, how to load); nothing is
        pickled. See :mod:`rank.retrieve.hub`.

        Parameters
        ----------
        repo_id : str
            ``"owner/name"``; a model repository, created if missing.
        token : str, optional
            Hub token (default: the one huggingface-hub has stored or ``HF_TOKEN``).
        private : bool, optional
            Visibility of a repository created here (default: the Hub's).
        revision : str, optional
            Branch to commit to (default: the main branch).
        commit_message : str, optional
        create_pr : bool, default False
            Open a pull request instead of committing to the branch.
        model_card : bool, default True
            Write README.md (False keeps the repository's own).
        description : str, optional
            A paragraph added to the model card.

        Returns the ``CommitInfo`` of the upload (a str: the commit URL). Raises
        MissingDependencyError without huggingface-hub, InvalidValueError for a malformed
        `repo_id`; Hub errors (authentication, network) propagate as huggingface-hub raises
        them. Cost: one :meth:`save` to a temporary directory, one SHA-256 pass, the upload.

        >>> index.save_to_hub("me/my-index", private=True)  # doctest: +SKIP
        """
        from rank.retrieve import hub

        return hub.push(self, repo_id, token=token, private=private, revision=revision,
                        commit_message=commit_message, create_pr=create_pr, model_card=model_card,
                        description=description)

    @classmethod
    def load_from_hub(cls: type[_T], repo_id: str, revision: Optional[str] = None, mmap: bool = True, *,
                      verify: bool = True, token: Optional[str] = None,
                      cache_dir: Union[str, "os.PathLike[str]", None] = None, **load_options: Any) -> _T:
        """Download an index shared with :meth:`save_to_hub` and load it (extra ``hub``).

        Parameters
        ----------
        repo_id : str
            ``"owner/name"`` of the Hub model repository.
        revision : str, optional
            Branch, tag or commit (default: the main branch).
        mmap : bool, default True
            Memory-map the arrays from the huggingface-hub cache (see :meth:`load`; the
            approximate DenseIndex kinds are read into memory).
        verify : bool, default True
            Check every file's SHA-256 against the repository's ``rank_kernels_index.json``
            (one read of every byte; the loader's structural checks run either way).
        token : str, optional
            Hub token for a private repository.
        cache_dir : str or path, optional
            huggingface-hub cache directory (default: its own, ``HF_HUB_CACHE``).
        **load_options
            Passed on to the class's :meth:`load` (e.g. ``tokenizer=`` of ``BM25.load``, for an
            index saved with a custom tokenizer pattern).

        Files come through the huggingface-hub cache: ``HF_HUB_OFFLINE=1`` reads only the
        cache, and a second load downloads nothing. Raises ModelNotFoundError (a
        FileNotFoundError) when the repository or revision cannot be found online or in the
        cache, CorruptFileError when it is not a rank-kernels index of this class or its files
        are inconsistent (no code from the repository is ever run), MissingDependencyError
        without huggingface-hub. Cost: the download, a SHA-256 pass with `verify`, then
        :meth:`load`.

        >>> index = BM25.load_from_hub("me/my-index")  # doctest: +SKIP
        """
        from rank.retrieve import hub

        index: _T = hub.pull(cls, repo_id, revision=revision, mmap=mmap, verify=verify, token=token,
                             cache_dir=cache_dir, **load_options)
        return index
