"""Download a registry checkpoint from the Hugging Face hub (needs network; never used in tests)."""

from __future__ import annotations

from pathlib import Path

from .loader import ModelSourceError, one_line
from .registry import CheckpointEntry


def _offline(err: Exception) -> bool:
    text = f"{type(err).__name__} {err}".lower()
    return any(word in text for word in ("offline", "connect", "resolve", "network", "timed out"))


def download_checkpoint(entry: CheckpointEntry) -> Path:
    """Fetch the first of `entry.filenames` that the hub repo has; clear error when offline."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    errors = []
    for filename in entry.filenames:
        try:
            return Path(hf_hub_download(entry.repo_id, filename, revision=entry.revision))
        except EntryNotFoundError as err:
            errors.append(f"{filename}: not in the repo ({err})")
        except Exception as err:  # offline, auth, HTTP errors
            errors.append(f"{filename}: {type(err).__name__}: {one_line(err)}")
            if _offline(err):
                break  # the other file names will not download either
    raise ModelSourceError(
        f"cannot download {entry.repo_id} ({'; '.join(errors)}); without network, download the checkpoint "
        "elsewhere and pass its local path, or convert it once with `nnsight-codi convert`"
    )
