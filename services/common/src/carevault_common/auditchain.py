"""The audit chain's format, shared by the writer (api) and the verifier
(``carevault audit verify``), so that both hash exactly the same bytes.

Each event's hash covers the previous event's hash and a canonical encoding of
the event, its sequence number included::

    hash(n) = SHA-256( "carevault/audit-event/v1" 0x00 | bytes(hash(n-1)) | canonical(event n) )
    hash(0) = 64 zeros (genesis), or the hash of the retention anchor

``canonical`` is the event's fields as JSON with sorted keys, no whitespace,
timestamps as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``. A **checkpoint** is the pair
(seq, hash) of the chain head at one moment, signed by a key the database does not
hold (:mod:`carevault_crypto.checkpoint`); its payload is :func:`checkpoint_payload`.

:class:`ChainVerifier` checks a chain fed in sequence order and names what it
finds: altered, deleted, inserted, reordered or renumbered events, a rewritten
chain that no longer matches a signed checkpoint, a forged checkpoint, events
after the chain head. It keeps a bounded window of recent hashes, so it verifies
any length in constant memory; an event moved farther than the window is
reported as altered rather than moved.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

GENESIS_HASH: Final = "0" * 64
_EVENT_LABEL: Final = b"carevault/audit-event/v1\x00"
_CHECKPOINT_LABEL: Final = "carevault/audit-checkpoint/v1"
DEFAULT_WINDOW: Final = 10_000
PRUNED_EVENT: Final = "audit.pruned"
# How far from its place a misplaced event is looked for when its predecessor is unknown.
MOVE_SEARCH: Final = 8


def format_time(value: datetime) -> str:
    """UTC, microseconds, ``Z``: the one text form of a timestamp in the chain.
    A naive value (SQLite hands them back so) is taken as UTC."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class EventContent:
    """What an audit event says: ids, codes and pseudonyms, never health content."""

    event_id: str
    recorded_at: datetime
    tenant: str
    event: str
    category: str
    action: str
    outcome: int | None
    resource_type: str | None
    resource_id: str | None
    patient: str | None
    principal: str | None
    client_id: str | None
    request_id: str | None
    purpose: str | None
    legal_basis: str | None
    details: str  # canonical JSON object text, "{}" when empty

    def canonical(self, seq: int) -> bytes:
        fields: dict[str, Any] = asdict(self)
        fields["recorded_at"] = format_time(self.recorded_at)
        fields["seq"] = seq
        return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def canonical_details(details: dict[str, Any] | None) -> str:
    return orjson.dumps(details or {}, option=orjson.OPT_SORT_KEYS).decode()


def event_hash(prev_hash: str, seq: int, content: EventContent) -> str:
    digest = hashlib.sha256(_EVENT_LABEL)
    digest.update(bytes.fromhex(prev_hash))
    digest.update(content.canonical(seq))
    return digest.hexdigest()


def checkpoint_payload(seq: int, chain_hash: str, signed_at: datetime) -> bytes:
    """The bytes a checkpoint signature covers."""
    return orjson.dumps(
        {"label": _CHECKPOINT_LABEL, "seq": seq, "hash": chain_hash, "signed_at": format_time(signed_at)}, option=orjson.OPT_SORT_KEYS
    )


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    content: EventContent
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: str
    signed_at: datetime
    key_id: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class LoggedCheckpoint:
    """A checkpoint as api also writes it to its log stream (shipped elsewhere): the
    signature without the hash, which is checked against the event stored at ``seq``.
    Deleting the checkpoints from the database does not make these go away."""

    seq: int
    signed_at: datetime
    key_id: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where the chain starts after old events were pruned (retention)."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # altered | deleted | inserted | reordered | renumbered | checkpoint | head | anchor
    seq: int | None
    message: str


# A checkpoint signature check: (payload, signature, key id) -> valid.
SignatureCheck = Callable[[bytes, bytes, str], bool]


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    events: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints_valid: int = 0
    last_signed_seq: int | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def unsigned_tail(self) -> int:
        """Events after the last valid checkpoint: protected by the chain only."""
        if self.last_seq is None:
            return 0
        return self.last_seq - (self.last_signed_seq or ((self.first_seq or 1) - 1))


class ChainVerifier:
    """Feed stored events in ascending ``seq`` order, then :meth:`finish`."""

    def __init__(
        self,
        *,
        anchor: Anchor | None = None,
        checkpoints: Iterable[Checkpoint] = (),
        check_signature: SignatureCheck | None = None,
        window: int = DEFAULT_WINDOW,
        logged_checkpoints: Iterable[LoggedCheckpoint] = (),
    ) -> None:
        self.report = Report()
        self._anchor = anchor
        self._prune_recorded = anchor is None
        self._start_seq = anchor.seq + 1 if anchor else 1
        self._start_hash = anchor.hash if anchor else GENESIS_HASH
        self._expected = self._start_seq
        self._chain_hash = self._start_hash
        self._previous: StoredEvent | None = None
        self._previous_intact = True
        self._window = window
        # stored hash -> original seq of the event that carries it (bounded).
        self._origin: OrderedDict[str, int] = OrderedDict({self._start_hash: self._start_seq - 1})
        self._moved: list[tuple[int, int]] = []  # (stored seq, original seq)
        self._checkpoints: dict[int, Checkpoint] = {}
        self._check_signature = check_signature
        self._logged: dict[int, list[LoggedCheckpoint]] = {}
        if check_signature is not None:
            for logged in logged_checkpoints:
                self._logged.setdefault(logged.seq, []).append(logged)
        for cp in sorted(checkpoints, key=lambda c: c.seq):
            self._admit_checkpoint(cp)
        if anchor is not None and anchor.seq > 0:
            start = self._checkpoints.get(anchor.seq)
            if start is None or start.hash != anchor.hash:
                self._find(
                    "anchor", anchor.seq, f"the chain starts at seq {anchor.seq + 1} but no signed checkpoint vouches for that start"
                )

    def _find(self, kind: str, seq: int | None, message: str) -> None:
        self.report.findings.append(Finding(kind, seq, message))

    def _admit_checkpoint(self, cp: Checkpoint) -> None:
        if self._check_signature is None:
            return  # no public key: checkpoints are not evidence
        if not self._check_signature(checkpoint_payload(cp.seq, cp.hash, cp.signed_at), cp.signature, cp.key_id):
            self._find("checkpoint", cp.seq, f"checkpoint at seq {cp.seq}: the signature does not verify (forged or altered checkpoint)")
            return
        self._checkpoints[cp.seq] = cp

    def _original_seq(self, event: StoredEvent) -> int | None:
        """The seq an intact but misplaced event was recorded under: one after the
        event its ``prev_hash`` names, or failing that a near seq."""
        predecessor = self._origin.get(event.prev_hash)
        candidates = [predecessor + 1] if predecessor is not None else []
        candidates += [event.seq + sign * d for d in range(1, MOVE_SEARCH + 1) for sign in (1, -1)]
        for candidate in candidates:
            if (
                candidate >= self._start_seq
                and candidate != event.seq
                and event_hash(event.prev_hash, candidate, event.content) == event.hash
            ):
                return candidate
        return None

    def _remember(self, chain_hash: str, original_seq: int) -> None:
        self._origin[chain_hash] = original_seq
        if len(self._origin) > self._window:
            self._origin.popitem(last=False)

    def feed(self, event: StoredEvent) -> None:
        report = self.report
        report.events += 1
        report.first_seq = event.seq if report.first_seq is None else report.first_seq
        if event.seq < self._expected:
            self._find("inserted", event.seq, f"seq {event.seq}: lies before the start of the chain (seq {self._start_seq})")
            return
        gap = event.seq > self._expected
        if gap:
            first, last = self._expected, event.seq - 1
            where = f"seq {first}" if first == last else f"seq {first}..{last}"
            self._find("deleted", first, f"{where}: missing (deleted)")
        intact = event_hash(event.prev_hash, event.seq, event.content) == event.hash
        original = event.seq
        if not intact:
            moved_from = self._original_seq(event)
            if moved_from is not None:
                self._moved.append((event.seq, moved_from))
                original = moved_from
            else:
                self._find("altered", event.seq, f"seq {event.seq}: altered (its content does not match its hash)")
        elif event.prev_hash != self._chain_hash and not gap:
            previous = self._previous
            if previous is None:
                self._find("altered", event.seq, f"seq {event.seq}: does not link to the start of the chain")
            elif self._previous_intact and event.prev_hash == previous.prev_hash:
                self._find("inserted", previous.seq, f"seq {previous.seq}: inserted (seq {event.seq} links to the event before it)")
            elif self._previous_intact:
                self._find(
                    "altered",
                    previous.seq,
                    f"seq {previous.seq}: altered and its hash recomputed (seq {event.seq} no longer links to it)",
                )
        cp = self._checkpoints.get(event.seq)
        if cp is not None:
            if cp.hash != event.hash:
                self._find(
                    "checkpoint",
                    event.seq,
                    f"seq {event.seq}: does not match the checkpoint signed at {format_time(cp.signed_at)} (the chain up to it was rewritten)",
                )
            else:
                report.checkpoints_valid += 1
                report.last_signed_seq = event.seq
        if not self._prune_recorded and self._anchor is not None and event.content.event == PRUNED_EVENT and intact:
            self._prune_recorded = orjson.loads(event.content.details).get("up_to_seq") == self._anchor.seq
        for logged in self._logged.pop(event.seq, []):
            assert self._check_signature is not None
            if self._check_signature(checkpoint_payload(event.seq, event.hash, logged.signed_at), logged.signature, logged.key_id):
                report.checkpoints_valid += 1
                report.last_signed_seq = max(report.last_signed_seq or 0, event.seq)
            else:
                self._find(
                    "checkpoint",
                    event.seq,
                    f"seq {event.seq}: does not match the checkpoint logged at {format_time(logged.signed_at)} (the chain up to it was rewritten)",
                )
        self._remember(event.hash, original)
        self._previous, self._previous_intact = event, intact and not gap
        self._chain_hash = event.hash
        self._expected = event.seq + 1
        report.last_seq = event.seq

    def finish(self, head_seq: int | None = None, head_hash: str | None = None) -> Report:
        """Close the check; ``head_*`` is the chain head row the writer keeps."""
        self._report_moves()
        last = self.report.last_seq if self.report.last_seq is not None else self._start_seq - 1
        if not self._prune_recorded and self._anchor is not None:
            self._find(
                "anchor",
                self._anchor.seq,
                f"the chain starts at seq {self._anchor.seq + 1} but no {PRUNED_EVENT} event records that pruning",
            )
        beyond = [seq for seq in (*self._checkpoints, *self._logged) if seq > last]
        if beyond:
            end = max(beyond)
            self._find("deleted", last + 1, f"seq {last + 1}..{end}: missing (a checkpoint was signed at seq {end}; deleted at the end)")
        if head_seq is not None:
            if last > head_seq:
                self._find("inserted", head_seq + 1, f"seq {head_seq + 1}..{last}: after the chain head (seq {head_seq}): inserted")
            elif last < head_seq:
                self._find("deleted", last + 1, f"seq {last + 1}..{head_seq}: missing at the end (the chain head is at seq {head_seq})")
            elif head_hash is not None and head_hash != self._chain_hash:
                self._find("head", head_seq, f"seq {head_seq}: the chain head records another hash than the last event")
        return self.report

    def _report_moves(self) -> None:
        if not self._moved:
            return
        where = dict(self._moved)  # stored -> original
        done: set[int] = set()
        runs: list[list[tuple[int, int]]] = []
        for stored, original in self._moved:
            if stored in done:
                continue
            if where.get(original) == stored and original not in done:
                low, high = sorted((stored, original))
                self._find("reordered", low, f"seq {low} and seq {high}: swapped (reordered)")
                done |= {stored, original}
                continue
            if runs and runs[-1][-1][0] + 1 == stored and runs[-1][-1][0] - runs[-1][-1][1] == stored - original:
                runs[-1].append((stored, original))
            else:
                runs.append([(stored, original)])
        for run in runs:
            first_stored, first_original = run[0]
            last_stored = run[-1][0]
            offset = first_stored - first_original
            span = f"seq {first_stored}" if first_stored == last_stored else f"seq {first_stored}..{last_stored}"
            if len(run) == 1 and abs(offset) > 1:
                self._find("reordered", first_stored, f"seq {first_stored}: holds the event recorded as seq {first_original} (reordered)")
            elif offset > 0:
                inserted = f"seq {first_original}" if offset == 1 else f"seq {first_original}..{first_stored - 1}"
                self._find("inserted", first_original, f"{inserted}: inserted ({span} renumbered by +{offset} to make room)")
            else:
                self._find(
                    "deleted",
                    first_stored,
                    f"{-offset} event(s) deleted before seq {first_stored} ({span} renumbered by {offset} to hide the gap)",
                )
