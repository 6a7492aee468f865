"""Download a registry checkpoint from the Hugging Face hub (needs network; never used in tests)."""

from __future__ import annotations

from pathlib import Path

from .registry import CheckpointEntry


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
            errors.append(f"{filename}: {type(err).__name__}: {err}")
    raise RuntimeError(
        f"cannot download {entry.repo_id} ({'; '.join(errors)}). Without network, download the checkpoint "
        "elsewhere and pass its local path, or convert it once with `nnsight-codi convert`."
    )
