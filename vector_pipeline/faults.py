"""Fault injection for the reliability suite: kill or stop this process at a named step.

Off unless ``VECTOR_PIPELINE_FAULT`` (``Settings.fault``) is ``crash:<step>`` (SIGKILL, as a
power cut or OOM kill would) or ``pause:<step>`` (SIGSTOP, as a long GC pause or a frozen
VM would). Steps, in compaction order: after_lock, mid_download, mid_merge, mid_upload,
after_upload, after_publish, mid_archive; a reader's reader_before_download (pointer and
manifest read, files not yet fetched); the Pinecone backfill's ``backfill_page_<n>`` (page
n's delta is written, the checkpoint has not moved yet); ``chroma_close``, fired in the chroma
host (``chroma/host_process.py``) at a client's close, once per process: ``pause`` leaves the close
without an answer, as chroma's spinning close does (issue 19); a base fold's FOLD_STEPS
(``compaction/base_fold.py``). Several faults, comma-separated, each fire at their own step
(``pause:fold_written,crash:rebase_uploaded``: stop after the fold wrote its base, and once
resumed, die after the rebased version is uploaded).
"""

import logging
import os
import signal

from .config import Settings

log = logging.getLogger(__name__)

_fired: set[str] = set()  # a fault fires once per process (a resumed process then runs on)

STEPS = ("after_lock", "mid_download", "mid_merge", "mid_upload", "after_upload", "after_publish", "mid_archive")
READER_STEPS = ("reader_before_download",)
# A base fold: its new base written (lock not taken), the lock taken, the rebased version
# uploaded (pointer not moved), the pointer moved.
FOLD_STEPS = ("fold_written", "rebase_locked", "rebase_uploaded", "rebase_published")


def checkpoint(settings: Settings, step: str) -> None:
    if not settings.fault:
        return
    faults = dict(reversed(f.partition(":")[::2]) for f in settings.fault.split(","))  # step -> action
    action = faults.get(step)
    if action is None or step in _fired:
        return
    _fired.add(step)
    log.warning("fault injection: %s at %s (pid %d)", action, step, os.getpid())
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.kill(os.getpid(), signal.SIGKILL if action == "crash" else signal.SIGSTOP)
