"""Benchmarks from the Hugging Face hub: the dataset repository is downloaded (or found in the hub's
cache) with `huggingface_hub`, then read like any local SpeechRole-Eval folder."""

from __future__ import annotations

import os
from pathlib import Path

from speechrole.problems import DataError


def download(repo: str) -> Path:
    """The local folder of dataset `OWNER/NAME[@REVISION]`; offline (HF_HUB_OFFLINE=1) only the cache."""
    repo_id, _, revision = repo.partition("@")
    if repo_id.count("/") != 1:
        raise DataError(f"hf:{repo}", "", "expected hf:OWNER/NAME or hf:OWNER/NAME@REVISION")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    try:
        return Path(
            snapshot_download(
                repo_id,
                repo_type="dataset",
                revision=revision or None,
                local_files_only=offline,
                cache_dir=os.environ.get("HF_HUB_CACHE") or None,  # read now: the hub reads it at import
            )
        )
    except LocalEntryNotFoundError:
        where = "is not in the local Hugging Face cache" + (" (HF_HUB_OFFLINE is set)" if offline else "")
        raise DataError(
            f"hf:{repo}",
            "",
            f"{where} and the hub cannot be reached: download it where the hub is reachable "
            f"(hf download {repo_id} --repo-type dataset --local-dir DIR) and pass --bench DIR",
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise DataError(f"hf:{repo}", "", f"download failed: {type(exc).__name__}: {exc}") from None
