"""Whether this process may reach the Hugging Face hub: decided once, at settings time.

Without a decision, every model load outside ``make`` (which exports ``HF_HUB_OFFLINE=1``) spent ~40 s
in huggingface_hub's retries before falling back to the packaged models. Now a process is offline
unless a model setting names a hub model and the hub answers one short HTTP request. The libraries
read ``HF_HUB_OFFLINE`` when they are first imported, so ``apply`` sets it (and
``TRANSFORMERS_OFFLINE``) in the environment before any of them is.

>>> names_hub_model("packaged:all-MiniLM-L6-v2"), names_hub_model("cross-encoder/nli-deberta-v3-small")
(False, True)
"""

from __future__ import annotations

import os
import re
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
# A hub id: "name" or "owner/name" (letters, digits, "-", "_", "."), never a path on this machine.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def names_hub_model(ref: str | None) -> bool:
    """Whether a model setting is a hub id rather than a ``packaged:`` model or a local path."""
    ref = (ref or "").strip()
    if not ref or ref.startswith(("packaged:", "/", ".", "~")) or Path(ref).expanduser().exists():
        return False
    return bool(_HUB_ID.match(ref))


def hub_answers(endpoint: str, timeout: float) -> bool:
    """Whether ``endpoint`` answers an HTTP request (any status) within ``timeout`` seconds.

    A TCP connect alone is not enough: an intercepting proxy accepts every connection and then fails
    TLS, and huggingface_hub would retry against it. Name resolution has no timeout of its own, so the
    request runs in a daemon thread that is given up after ``timeout`` however far it got.
    """
    if not urlsplit(endpoint).hostname:
        return False
    answered = threading.Event()

    def request() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
        except urllib.error.HTTPError:  # a status code is an answer
            pass
        except (OSError, ValueError):  # refused, unresolvable, TLS failure, a malformed endpoint
            return
        answered.set()

    thread = threading.Thread(target=request, name="hub-check", daemon=True)
    thread.start()
    thread.join(timeout)
    return answered.is_set()


@dataclass(frozen=True)
class HubAccess:
    offline: bool
    reason: str


def check_access(
    model_refs: list[str | None],
    *,
    explicit: str | None,
    endpoint: str,
    timeout: float,
) -> HubAccess:
    """Offline, and why; ``explicit`` is the HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE value the environment set."""
    if explicit is not None and explicit.strip() != "":
        offline = explicit.strip().lower() in ("1", "true", "yes", "on")
        return HubAccess(offline, f"HF_HUB_OFFLINE={explicit.strip()} in the environment")
    hub_refs = [ref for ref in model_refs if names_hub_model(ref)]
    if not hub_refs:
        return HubAccess(True, "no model setting names a hub model")
    if timeout <= 0:
        return HubAccess(True, "TRIAGE_HUB_CHECK_SECONDS=0 turns the hub check off")
    if hub_answers(endpoint, timeout):
        return HubAccess(False, f"{endpoint} answered; {', '.join(hub_refs)} can be downloaded")
    return HubAccess(True, f"{endpoint} did not answer within {timeout:g} s")


def apply(access: HubAccess) -> None:
    """Tell huggingface_hub and transformers (both read these once, on import)."""
    value = "1" if access.offline else "0"
    os.environ["HF_HUB_OFFLINE"] = value
    os.environ["TRANSFORMERS_OFFLINE"] = value
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported before the settings (a script's own import): tell it too
        constants.HF_HUB_OFFLINE = access.offline
