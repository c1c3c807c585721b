"""`lockgate audit verify`: proves the audit log and the trace chain are as their writers left them,
or names each record that is not.

Two chains are checked, the same way (lockgate.audit.chain): the audit log (every admin action) and
the trace chain (one link per stored trace, covering the SHA-256 of the trace's stored body).

- changed: a record whose content no longer gives its hash, or whose successor no longer links to
  it (it was rewritten and re-hashed); a trace whose body or indexed columns differ from its link.
- removed: a gap in the seq numbers; a tail shorter than the head checkpoint; a trace whose link
  remains but whose row is gone without a retention run that covers it.
- reordered: records whose seq numbers were exchanged. Each link names its predecessor's hash, so
  following the links from the start gives the order they were written in; a record found at
  another seq than its place in that order was moved.
- added: traces with no link at all, and records past the head checkpoint.

The head checkpoint (table `chain_heads`) is the last seq and hash each writer wrote, updated in the
same transaction as the record. Without it, deleting the newest records leaves a shorter chain that
is perfectly valid. Keeping the checkpoint in the same database, rather than in a file in the data
folder, is deliberate: with several replicas (PostgreSQL) there is no single data folder that sees
every append, and a file would drift from the database on every restore from backup. The cost: it
catches a cut tail made by anything that does not know about the checkpoint (a careless DELETE, a
table restored from an older copy, a partial export), not a deliberate attacker.

What a hash chain cannot do: someone with full write access to the database can rewrite every
record and recompute every hash and the checkpoint, and the result verifies. Only a copy of a
recent head kept outside the database's reach defeats that: `lockgate audit verify` prints the
head; keep it (in a ticket, a CI log, a WORM bucket) and pass it back with `--expect-head SEQ:HASH`
to prove that the log up to then is still the one you saw.

Retention deletes traces, so the trace chain must verify with parts missing. A retention run marks
each link whose trace it deleted with its own audit seq (`expired_by`) and records its cutoffs and
the chain's head at the time in its audit record; a missing trace is accepted only when such a run
covers it (old enough for its route, already chained when the run ran). Once every link at the old
end is expired, the run drops those links and records the last one's seq and hash as the anchor the
chain now starts from. The audit records carrying all this are themselves in the audit chain.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lockgate.audit.chain import (
    AUDIT_CHAIN,
    GENESIS_HASH,
    TRACE_CHAIN,
    AuditRecord,
    chain_hash,
    sha256_text,
    trace_link_fields,
)
from lockgate.store.base import ChainHead, RetentionCutoffs, Store, TraceLink

RETENTION_ACTION = "trace.retention"
MAX_TRACE_PROBLEMS = 1000  # past this, the count goes on but the messages stop


@dataclass(frozen=True)
class Problem:
    chain: str  # "audit" or "traces"
    kind: str  # "changed", "removed", "reordered" or "added"
    seq: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.chain}: {self.kind}: {self.message}"


@dataclass
class Verification:
    audit_records: int = 0
    trace_links: int = 0
    traces_expired: int = 0  # links whose trace a retention run deleted
    audit_head: ChainHead | None = None
    trace_head: ChainHead | None = None
    trace_anchor: ChainHead = field(default_factory=lambda: ChainHead(0, GENESIS_HASH))
    problems: list[Problem] = field(default_factory=list)
    problems_not_listed: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.problems_not_listed


@dataclass(frozen=True)
class Link:
    """A chain record reduced to what the chain hashes: where it claims to be, and its content."""

    seq: int
    prev_hash: str
    hash: str
    content: dict[str, Any]  # the hashed fields except seq
    name: str  # how messages call it

    def hash_at(self, seq: int) -> str:
        return chain_hash(self.prev_hash, {"seq": seq, **self.content})


@dataclass(frozen=True)
class ChainNouns:
    one: str
    many: str


AUDIT_NOUNS = ChainNouns("audit record", "audit records")
TRACE_NOUNS = ChainNouns("trace link", "trace links")


def audit_link(record: AuditRecord) -> Link:
    content = {k: v for k, v in record.hashed_fields().items() if k != "seq"}
    return Link(record.seq, record.prev_hash, record.hash, content, f"audit record {record.seq} ({record.action})")


def trace_chain_link(link: TraceLink) -> Link:
    fields = trace_link_fields(link.seq, link.trace_id, link.ts, link.route, link.body_sha256)
    del fields["seq"]
    return Link(link.seq, link.prev_hash, link.hash, fields, f"trace {link.trace_id} (link {link.seq})")


# -- one chain ------------------------------------------------------------------------------------


def check_chain(
    chain: str,
    nouns: ChainNouns,
    links: Iterable[Link],
    *,
    start: ChainHead,
    head: ChainHead | None,
    reload: Callable[[], Iterable[Link]],
) -> tuple[int, list[Problem]]:
    """Checks links in seq order in one streaming pass; only when something is off does it load the
    whole chain (`reload`) to work out what happened. Returns the number of links and the problems."""
    count, expected_seq, prev, intact = 0, start.seq + 1, start.hash, True
    for link in links:
        if link.seq <= start.seq:
            continue  # behind a retention anchor: no longer part of the chain
        count += 1
        if intact and (link.seq != expected_seq or link.prev_hash != prev or link.hash_at(link.seq) != link.hash):
            intact = False
        expected_seq, prev = link.seq + 1, link.hash
    if intact and _head_problem(chain, nouns, ChainHead(expected_seq - 1, prev), head, count, start) is None:
        return count, []
    return count, diagnose(chain, nouns, [link for link in reload() if link.seq > start.seq], start=start, head=head)


def diagnose(
    chain: str, nouns: ChainNouns, links: list[Link], *, start: ChainHead, head: ChainHead | None
) -> list[Problem]:
    """Walks the chain by its links, from the start, to find the order records were written in; then
    names every record that is not where, or not what, that order says."""
    problems: list[Problem] = []
    by_seq = sorted(links, key=lambda link: link.seq)
    successors: dict[str, list[Link]] = defaultdict(list)
    for link in by_seq:
        successors[link.prev_hash].append(link)
    visited: set[int] = set()
    lowest_unvisited = 0  # index into by_seq
    cursor_seq, cursor_hash = start.seq, start.hash
    while True:
        nxt = next((s for s in successors.get(cursor_hash, ()) if s.seq not in visited), None)
        if nxt is not None:
            position = cursor_seq + 1
        else:
            while lowest_unvisited < len(by_seq) and by_seq[lowest_unvisited].seq in visited:
                lowest_unvisited += 1
            if lowest_unvisited == len(by_seq):
                break
            nxt = by_seq[lowest_unvisited]
            problems.append(_break(chain, nouns, cursor_seq, nxt))
            position = nxt.seq
        visited.add(nxt.seq)
        if nxt.seq != position:
            problems.append(Problem(chain, "reordered", nxt.seq,
                                    f"{nxt.name} is out of order: stored at seq {nxt.seq}, it was written as seq "
                                    f"{position} (its link names the {nouns.one} written before it)"))
        if nxt.hash_at(position) != nxt.hash:
            problems.append(Problem(chain, "changed", nxt.seq,
                                    f"{nxt.name} was changed: hash mismatch at seq {nxt.seq} (its content no longer "
                                    "gives the hash it was written with)"))
        cursor_seq, cursor_hash = position, nxt.hash
    end_problem = _head_problem(chain, nouns, ChainHead(cursor_seq, cursor_hash), head, len(links), start)
    if end_problem is not None:
        problems.append(end_problem)
    return problems


def _break(chain: str, nouns: ChainNouns, cursor_seq: int, nxt: Link) -> Problem:
    """Why the walk found no successor for the record at `cursor_seq`, given the next record by seq."""
    if nxt.seq > cursor_seq + 1:
        first, last = cursor_seq + 1, nxt.seq - 1
        missing = f"{nouns.one} {first}" if first == last else f"{nouns.many} {first} to {last}"
        after = f"seq {cursor_seq}" if cursor_seq else "the start"
        return Problem(chain, "removed", first,
                       f"{missing} removed: gap in seq between {after} and {nxt.seq}")
    if nxt.seq == cursor_seq + 1 and nxt.hash_at(nxt.seq) == nxt.hash:
        return Problem(chain, "changed", cursor_seq,
                       f"{nouns.one} {cursor_seq} was changed and re-hashed: {nxt.name} no longer links to it")
    return Problem(chain, "removed", nxt.seq,
                   f"the chain breaks before {nxt.name}: it does not link to seq {cursor_seq} "
                   f"(a {nouns.one} was removed or replaced there)")


def _head_problem(chain: str, nouns: ChainNouns, end: ChainHead, head: ChainHead | None, count: int,
                  start: ChainHead) -> Problem | None:
    if head is None:
        if count == 0:
            return None
        return Problem(chain, "removed", None,
                       f"the head checkpoint of the {nouns.many} is missing, so records cut from the end would not "
                       "show; it is written with every record, so someone removed it")
    if head.seq > end.seq:
        first = end.seq + 1
        what = f"{nouns.one} {first}" if first == head.seq else f"{nouns.many} {first} to {head.seq}"
        return Problem(chain, "removed", first,
                       f"{what} removed: missing head (the chain ends at seq {end.seq}, the head checkpoint says "
                       f"{head.seq})")
    if head.seq < end.seq and head.seq >= start.seq:
        return Problem(chain, "added", head.seq + 1,
                       f"{nouns.many} {head.seq + 1} to {end.seq} were added outside Lockgate's writer: the head "
                       f"checkpoint ends at seq {head.seq}")
    if head.seq == end.seq and head.hash != end.hash:
        return Problem(chain, "changed", end.seq,
                       f"{nouns.one} {end.seq} was replaced: its hash differs from the head checkpoint")
    return None


# -- the trace chain's own checks -------------------------------------------------------------------


def trace_anchor(retention_runs: Iterable[AuditRecord]) -> ChainHead:
    """Where the trace chain starts: after the links the latest retention run pruned, or at genesis."""
    anchor = ChainHead(0, GENESIS_HASH)
    for run in retention_runs:
        through, digest = run.details.get("pruned_through"), run.details.get("anchor_hash")
        if isinstance(through, int) and isinstance(digest, str) and through >= anchor.seq:
            anchor = ChainHead(through, digest)
    return anchor


def check_trace(link: TraceLink, retention_runs: dict[int, AuditRecord]) -> list[Problem]:
    """The trace behind one link: its body still hashes to the link, its columns still match its
    body, or, if it is gone, a retention run deleted it."""
    name = f"trace {link.trace_id} (link {link.seq})"
    if link.body is None:
        return _missing_trace(link, name, retention_runs)
    if sha256_text(link.body) != link.body_sha256:
        return [Problem(TRACE_CHAIN, "changed", link.seq, f"{name} was changed: its body no longer gives the "
                                                            "hash in its link")]
    try:
        body = json.loads(link.body)
    except ValueError:
        return [Problem(TRACE_CHAIN, "changed", link.seq, f"{name} was changed: its body is not JSON")]
    problems = []
    for column, value in (link.columns or {}).items():
        if value != body.get(column):
            problems.append(Problem(TRACE_CHAIN, "changed", link.seq,
                                    f"{name} was changed: column {column} says {value!r}, its body says "
                                    f"{body.get(column)!r}"))
    return problems


def _missing_trace(link: TraceLink, name: str, retention_runs: dict[int, AuditRecord]) -> list[Problem]:
    if link.expired_by is None:
        return [Problem(TRACE_CHAIN, "removed", link.seq,
                        f"{name} was removed: its link is there, the trace is not, and no retention run deleted it")]
    run = retention_runs.get(link.expired_by)
    if run is None:
        return [Problem(TRACE_CHAIN, "removed", link.seq,
                        f"{name} was removed: it claims retention run {link.expired_by} deleted it, but there is "
                        f"no such '{RETENTION_ACTION}' audit record")]
    cutoff = RetentionCutoffs.from_details(run.details).cutoff_for(link.route)
    chained_in_time = link.seq <= int(run.details.get("max_seq") or 0)
    if cutoff is None or link.ts >= cutoff or not chained_in_time:
        return [Problem(TRACE_CHAIN, "removed", link.seq,
                        f"{name} was removed: retention run {run.seq} does not cover it (route {link.route!r}, "
                        f"cutoff {cutoff}, trace time {link.ts})")]
    return []


# -- everything -------------------------------------------------------------------------------------


def verify_store(store: Store) -> Verification:
    result = Verification()
    records = store.list_audit()
    result.audit_records = len(records)
    result.audit_head = store.chain_head(AUDIT_CHAIN)
    audit_links = [audit_link(r) for r in records]
    _, audit_problems = check_chain(AUDIT_CHAIN, AUDIT_NOUNS, audit_links, start=ChainHead(0, GENESIS_HASH),
                                    head=result.audit_head, reload=lambda: audit_links)
    result.problems.extend(audit_problems)

    runs = {r.seq: r for r in records if r.action == RETENTION_ACTION}
    result.trace_anchor = trace_anchor(runs.values())
    result.trace_head = store.chain_head(TRACE_CHAIN)
    trace_problems: list[Problem] = []

    def links_with_trace_checks() -> Iterable[Link]:
        for link in store.iter_trace_links(with_bodies=True):
            if link.seq <= result.trace_anchor.seq:
                continue
            if link.expired_by is not None and link.body is None:
                result.traces_expired += 1
            trace_problems.extend(check_trace(link, runs))
            yield trace_chain_link(link)

    result.trace_links, link_problems = check_chain(
        TRACE_CHAIN, TRACE_NOUNS, links_with_trace_checks(), start=result.trace_anchor, head=result.trace_head,
        reload=lambda: (trace_chain_link(t) for t in store.iter_trace_links(with_bodies=False)),
    )
    unchained, sample = store.unchained_traces()
    if unchained:
        trace_problems.append(Problem(
            TRACE_CHAIN, "added", None,
            f"{unchained} trace(s) have no link in the trace chain (e.g. {', '.join(sample)}): they were stored "
            "outside Lockgate's writer, or before chaining existed"))
    everything = link_problems + trace_problems
    result.problems.extend(everything[:MAX_TRACE_PROBLEMS])
    result.problems_not_listed = max(0, len(everything) - MAX_TRACE_PROBLEMS)
    return result


def parse_expected_head(text: str) -> ChainHead:
    """`SEQ:HASH`, as `lockgate audit verify` prints the head. Raises ValueError with what is wrong."""
    seq, sep, digest = text.partition(":")
    if not sep or not seq.strip().isdigit() or len(digest.strip()) != 64:
        raise ValueError(f"--expect-head wants SEQ:HASH as printed by `lockgate audit verify` (e.g. 42:3fa9...), "
                         f"got {text!r}")
    return ChainHead(int(seq), digest.strip().lower())


def check_expected_head(expected: ChainHead, records: Iterable[AuditRecord]) -> Problem | None:
    """A head noted earlier must still be in the log, at the same seq with the same hash."""
    for record in records:
        if record.seq == expected.seq:
            if record.hash == expected.hash:
                return None
            return Problem(AUDIT_CHAIN, "changed", expected.seq,
                           f"audit record {expected.seq} is not the one noted earlier: its hash is {record.hash}, "
                           f"the expected head says {expected.hash} (the log was rewritten up to there)")
    return Problem(AUDIT_CHAIN, "removed", expected.seq,
                   f"audit record {expected.seq}, noted earlier as a head, is no longer in the log")
