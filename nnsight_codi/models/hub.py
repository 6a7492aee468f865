"""Download a registry checkpoint from the Hugging Face hub (needs network; never used in tests).

Without network (`HF_HUB_OFFLINE`, or the Hub's host unreachable: `nnsight_codi.data.network`) a hub
id that is not in the local cache fails at once (`fail_fast_offline`), not after the hub client's
retries.
"""

from __future__ import annotations

from pathlib import Path

from ..data.network import offline_reason
from .model_sources import ModelSourceError, one_line
from .registry import CheckpointEntry

ADVICE = ("download it where there is network and pass its local path (or convert it once with "
          "`nnsight-codi convert`)")


def _offline(err: Exception) -> bool:
    """No network (or HF_HUB_OFFLINE) and the file is not in the local cache."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    text = f"{type(err).__name__} {err}".lower()
    return isinstance(err, (LocalEntryNotFoundError, ConnectionError)) or any(
        word in text for word in ("offline", "connect", "resolve", "network", "timed out"))


def fail_fast_offline(repo_id: str, filenames: tuple[str, ...] = ("config.json",), what: str = "model") -> None:
    """Raise a one-line `ModelSourceError` now when the Hub cannot be reached and none of `filenames` of
    `repo_id` is in the local Hugging Face cache; do nothing otherwise (online, or cached).
    """
    reason = offline_reason()
    if reason is None:
        return
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        try:
            if isinstance(try_to_load_from_cache(repo_id, filename), str):
                return
        except ValueError:  # not a valid repo id: the loader's own message says so
            return
    raise ModelSourceError(f"cannot load {what} {repo_id}: no network ({reason}) and not in the local Hugging "
                           f"Face cache; {ADVICE}")


def download_checkpoint(entry: CheckpointEntry) -> Path:
    """Fetch the first of `entry.filenames` that the hub repo has; one-line `ModelSourceError` otherwise."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    fail_fast_offline(entry.repo_id, tuple(entry.filenames), "checkpoint")
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
