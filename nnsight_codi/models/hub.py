"""Download a registry checkpoint from the Hugging Face hub (needs network; never used in tests)."""

from __future__ import annotations

from pathlib import Path

from .registry import CheckpointEntry
from .sources import ModelSourceError, one_line

ADVICE = ("download it where there is network and pass its local path (or convert it once with "
          "`nnsight-codi convert`)")


def _offline(err: Exception) -> bool:
    """No network (or HF_HUB_OFFLINE) and the file is not in the local cache."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    text = f"{type(err).__name__} {err}".lower()
    return isinstance(err, (LocalEntryNotFoundError, ConnectionError)) or any(
        word in text for word in ("offline", "connect", "resolve", "network", "timed out"))


def download_checkpoint(entry: CheckpointEntry) -> Path:
    """Fetch the first of `entry.filenames` that the hub repo has; one-line `ModelSourceError` otherwise."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    errors = []
    for filename in entry.filenames:
        try:
            return Path(hf_hub_download(entry.repo_id, filename, revision=entry.revision))
        except Exception as err:  # offline, not found, auth, HTTP errors
            if _offline(err):
                raise ModelSourceError(f"cannot download {entry.repo_id}: no network and not in the local Hugging "
                                       f"Face cache; {ADVICE}") from None
            if isinstance(err, EntryNotFoundError):
                errors.append(f"{filename}: not in the repo")
            else:
                errors.append(f"{filename}: {type(err).__name__}: {one_line(err)}")
    raise ModelSourceError(f"cannot download {entry.repo_id} ({'; '.join(errors)}); {ADVICE}")
