"""The trace journal: traces reach disk before their response is acknowledged, and the database later.

Why: a trace must survive the database being down and the process being killed, and the request
path must never wait on the database. So each worker appends every trace as one JSON line to its
own open segment file with a single `write()` (no fsync: the kernel keeps the bytes once the call
returns, even if the process is SIGKILLed the next instant). A background thread regularly seals
the segment and loads sealed segments into the store; a segment is deleted only after its rows are
committed. Inserts are idempotent on trace id, so replaying a segment twice is harmless.

Segment file names carry the writer's pid and a state:
  trace-<pid>-<seq>.open      being appended to by a live process
  trace-<pid>-<seq>.sealed    complete, waiting to be loaded
  trace-<pid>-<seq>.loading-<loader pid>   claimed by a loader (an atomic rename)
Segments left `.open` or `.loading-*` by a dead process are recovered by any live one.

Lines are tagged records: a trace has no `kind` (the original format), a user's rating has
`"kind": "feedback"` (lockgate.feedback). Both share the segments, so a rating is exactly as durable
as a trace. After each pass that loaded something, ratings are linked to their traces.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from lockgate.feedback.linking import link_pending
from lockgate.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

MAX_BATCH = 2000


class TraceJournal:
    def __init__(
        self, spool_dir: Path, store: Store, *, flush_interval_s: float = 0.2, loads: bool = True,
        housekeeping: Callable[[], None] | None = None,
    ) -> None:
        """`loads=False` makes a writer that only seals its segments: with several worker processes
        one loader in the supervisor does the loading, so the workers' interpreters spend no time
        parsing segments and talking to the database. `housekeeping` runs on the loader's thread
        after each load (the retention sweep: it decides itself when it is due)."""
        self.loads = loads
        self._housekeeping = housekeeping
        self.spool_dir = spool_dir
        self._store = store
        self._flush_interval_s = flush_interval_s
        self._pid = os.getpid()
        self._seq = 0
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._open_path: Path | None = None
        self._pending = 0  # lines in the open segment
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.store_healthy = True
        self._link_due = loads  # ratings left pending by a loader that died before linking them
        spool_dir.mkdir(parents=True, exist_ok=True)
        self._adopt_predecessor_segments()

    def _adopt_predecessor_segments(self) -> None:
        """Pids repeat (a restarted container gives its workers the pids the killed ones had), so
        segments bearing this pid before it wrote anything are a dead predecessor's: seal the ones it
        left open or half-loaded, and number new segments after its, so no file is ever overwritten."""
        for path in self.spool_dir.glob(f"trace-{self._pid}-*"):
            seq = path.name.split(".")[0].rsplit("-", 1)[-1]
            if seq.isdigit():
                self._seq = max(self._seq, int(seq))
        for path in self.spool_dir.glob("trace-*"):
            if path.suffix != ".sealed" and _owner_pid(path) == self._pid:
                try:
                    path.rename(path.with_name(path.name.split(".")[0] + ".sealed"))
                except FileNotFoundError:
                    continue

    # -- the request path -----------------------------------------------------------------------

    def append(self, trace: dict[str, Any]) -> None:
        """Durable against a process kill once this returns. Costs one write() syscall."""
        line = orjson.dumps(trace) + b"\n"
        with self._lock:
            if self._fd is None:
                self._open_segment()
            os.write(self._fd, line)  # type: ignore[arg-type]
            self._pending += 1

    def _open_segment(self) -> None:
        self._seq += 1
        self._open_path = self.spool_dir / f"trace-{self._pid}-{self._seq:08d}.open"
        self._fd = os.open(self._open_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._pending = 0

    # -- background loading ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="trace-journal", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Seals and loads what is left (best effort: what cannot be loaded stays on disk)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def flush(self) -> None:
        self.seal()
        if self.loads:
            self.load_sealed()

    def _run(self) -> None:
        if self.loads:
            self.recover_orphans()
        backoff = self._flush_interval_s
        while not self._stop.wait(backoff):
            try:
                if self.loads:
                    self.recover_orphans()  # not only at start: processes die while this one runs
                self.flush()
                if self._housekeeping is not None:
                    self._housekeeping()
                backoff = self._flush_interval_s
            except StoreUnavailable as exc:
                if self.store_healthy:
                    log.warning("trace store unavailable, spooling traces to %s: %s", self.spool_dir, exc)
                self.store_healthy = False
                backoff = min(5.0, backoff * 2)
            except Exception:  # noqa: BLE001 - the loader must never die; the files stay on disk
                log.exception("trace loader failed; will retry")
                backoff = min(5.0, backoff * 2)

    def seal(self) -> None:
        with self._lock:
            if self._fd is None or self._pending == 0:
                return
            fd, path = self._fd, self._open_path
            self._fd = None
            self._open_path = None
        os.close(fd)
        assert path is not None
        path.rename(path.with_suffix(".sealed"))

    def load_sealed(self) -> int:
        loaded = 0
        for path in sorted(self.spool_dir.glob("trace-*.sealed")):
            claimed = path.with_suffix(f".loading-{self._pid}")
            try:
                path.rename(claimed)
            except FileNotFoundError:
                continue  # another worker claimed it first
            loaded += self._load_file(claimed, on_failure=path)
            self._link_due = True
        if self._link_due:
            link_pending(self._store)  # raises StoreUnavailable like the loads: retried on the next pass
            self._link_due = False
        if loaded and not self.store_healthy:
            log.warning("trace store is back; spooled traces loaded")
        self.store_healthy = True
        return loaded

    def _load_file(self, path: Path, *, on_failure: Path) -> int:
        records = _read_lines(path)
        traces = [r for r in records if "kind" not in r]
        feedback = [r for r in records if r.get("kind") == "feedback"]
        if len(traces) + len(feedback) < len(records):
            log.warning("skipping %d journal records of unknown kinds in %s",
                        len(records) - len(traces) - len(feedback), path.name)
        try:
            for i in range(0, len(traces), MAX_BATCH):
                self._store.insert_traces(traces[i : i + MAX_BATCH])
            for i in range(0, len(feedback), MAX_BATCH):
                self._store.insert_feedback(feedback[i : i + MAX_BATCH])
        except BaseException:
            path.rename(on_failure)  # give it back for a later try
            raise
        path.unlink()
        return len(records)

    def recover_orphans(self) -> None:
        """Seals segments that dead processes left open or half-loaded."""
        for path in self.spool_dir.glob("trace-*"):
            if path.suffix == ".sealed":
                continue
            pid = _owner_pid(path)
            if pid is None or pid == self._pid or _alive(pid):
                continue
            sealed = path.with_name(path.name.split(".")[0] + ".sealed")
            try:
                path.rename(sealed)
            except FileNotFoundError:
                continue

    def spooled_segments(self) -> int:
        return sum(1 for _ in self.spool_dir.glob("trace-*"))


def _read_lines(path: Path) -> list[dict[str, Any]]:
    traces = []
    with path.open("rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                # A write cut short by a kill: its request was never acknowledged.
                log.warning("skipping a partial trace line at the end of %s", path.name)
                break
            try:
                traces.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                log.warning("skipping an unreadable trace line in %s", path.name)
    return traces


def _owner_pid(path: Path) -> int | None:
    name = path.name
    if ".loading-" in name:
        owner = name.rsplit("-", 1)[1]
    else:
        parts = name.split("-")
        owner = parts[1] if len(parts) >= 3 else ""
    return int(owner) if owner.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed process stays a zombie until it is reaped (for a while under a slow init, forever under
    # none), and kill(pid, 0) still finds it. A zombie writes nothing more: its segments are orphans.
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True  # no /proc (not Linux) or it just went away: the next pass will tell
    return stat.rsplit(b")", 1)[-1].split()[:1] != [b"Z"]

