"""`python -m benchmark download --out DIR`: fetch `PartImageNet_OOD.zip` from the Hugging Face hub.

Offline (HF_HUB_OFFLINE set, or the hub not answering an HTTP request within a few seconds) it
fails at once with where to download the archive by hand; either way, the next step is
`python -m benchmark prepare`. The probe is an HTTP request, not only a connection: an endpoint
that accepts connections and never answers would otherwise hold huggingface_hub in its retries
(five, ten seconds each) for minutes.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from benchmark.data.errors import DatasetError
from benchmark.data.release import facts as release

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 5.0


def _by_hand(out: Path) -> str:
    return (
        f"download {release.HUB_FILENAME} by hand from {release.HUB_PAGE} (Files and "
        f"versions) into {out}, then run `python -m benchmark prepare "
        f"{out / release.HUB_FILENAME} --out DIR`"
    )


def _offline_reason(endpoint: str, timeout: float) -> str | None:
    """Why the hub cannot be reached now (None if it answers an HTTP HEAD within `timeout`)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    url = urlparse(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        return f"{host}:{port} is not reachable ({exc})"
    try:
        with urllib.request.urlopen(
            urllib.request.Request(endpoint, method="HEAD"), timeout=timeout
        ):
            return None
    except urllib.error.HTTPError:
        return None  # it answered: an HTTP error status is still an answer
    except (OSError, ValueError) as exc:  # socket timeouts and URLError are OSErrors
        reason = getattr(exc, "reason", exc)
        return f"{host}:{port} accepts connections but gave no HTTP answer within {timeout:g} s ({reason})"


def download_release(out: str | os.PathLike, *, timeout: float | None = None) -> Path:
    """Download the release archive into `out`; returns the archive's path.

    `timeout` (seconds, default PROBE_TIMEOUT_S) bounds the probe and each metadata request.

    Raises:
        DatasetError: offline, huggingface_hub missing, or the download failed; the message says
            where to download by hand and to run `prepare`.
    """
    timeout = PROBE_TIMEOUT_S if timeout is None else timeout
    out = Path(out).expanduser()
    endpoint = os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT)
    if why := _offline_reason(endpoint, timeout):
        raise DatasetError(
            f"download: the Hugging Face hub is not reachable: {why}; " + _by_hand(out)
        )
    try:
        # Lazy: only this command needs it (it comes with timm, a dependency).
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise DatasetError(
            "download: huggingface_hub is not installed (pip install "
            "huggingface_hub); or " + _by_hand(out)
        ) from None
    out.mkdir(parents=True, exist_ok=True)
    try:
        path = hf_hub_download(
            repo_id=release.HUB_REPO_ID,
            filename=release.HUB_FILENAME,
            repo_type="dataset",
            local_dir=out,
            etag_timeout=timeout,
        )
    except Exception as exc:  # noqa: BLE001 - network, auth and hub errors all end the same way
        raise DatasetError(
            f"download: fetching {release.HUB_FILENAME} from "
            f"{release.HUB_REPO_ID} failed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); " + _by_hand(out)
        ) from None
    return Path(path)
