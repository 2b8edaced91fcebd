"""What a store's header says after each kind of write: pure functions from the durable header to the next one.

The store (engine/store.py) decides when to write and holds the locks; these functions decide what the new
header holds, so every transition of the header's state fields is in one place and can be tested without I/O:

* ``attached``: mount, before any page can be written: Dirty Shutdown, replay from the attach;
* ``checkpointed``: a checkpoint names the state written and where replay starts, or, with ``clean_at``
  (dismount, end of recovery), Clean Shutdown needing no log;
* ``rolled``: after a log roll, the store's records may reach the new generation;
* ``stamped``: a backup that ended successfully, in the slot of its kind.

Every one raises the sequence number by one, so a reader of the two copies takes the newer.
"""

from __future__ import annotations

from shadowstore.format.common import EMPTY_BACKUP_INFO, BackupInfo, LgPos, Signature, now_us
from shadowstore.format.dbheader import STATE_CLEAN_SHUTDOWN, STATE_DIRTY_SHUTDOWN, BlobRef, DbHeader

_SLOTS = {"copy": "copy_prev", "incremental": "inc_prev", "differential": "diff_prev"}


def attached(header: DbHeader, signature: Signature, attach_start: LgPos, attach_end: LgPos) -> DbHeader:
    """Dirty Shutdown from the attach on: replay starts after the ATTACH record."""
    gen = attach_end.gen
    return header._replace(
        state=STATE_DIRTY_SHUTDOWN,
        sequence=header.sequence + 1,
        log_signature=signature,
        last_attach=attach_start,
        last_attach_us=now_us(),
        replay_start=attach_end,
        log_required_min=gen,
        log_required_max=gen,
        log_committed=gen,
    )


def checkpointed(
    header: DbHeader,
    *,
    dbtime: int,
    tree: tuple[BlobRef, BlobRef, int],
    signature: Signature,
    covered: LgPos,
    disk_generation: int,
    clean_at: LgPos | None = None,
    detach: LgPos | None = None,
) -> DbHeader:
    """The header naming a state written by a checkpoint: ``tree`` is (catalog, space map, page count).

    ``disk_generation`` is the newest generation *on disk*: Log Required never names a log that a crash could
    lose (the generation records are being laid out in may run ahead of the disk until the next flush)."""
    catalog, space_map, page_count = tree
    current_gen = max(disk_generation, covered.gen)
    common = {
        "sequence": header.sequence + 1,
        "dbtime": dbtime,
        "page_count": page_count,
        "catalog": catalog,
        "space_map": space_map,
        "log_signature": signature,
    }
    if clean_at is None:
        return header._replace(
            **common,  # type: ignore[arg-type]
            state=STATE_DIRTY_SHUTDOWN,
            replay_start=covered,
            log_required_min=covered.gen,
            log_required_max=current_gen,
            log_committed=current_gen,
        )
    extra: dict[str, object] = {
        "state": STATE_CLEAN_SHUTDOWN,
        "last_consistent": clean_at,
        "last_consistent_us": now_us(),
        "replay_start": clean_at,
        "log_required_min": 0,
        "log_required_max": 0,
        "log_committed": max(header.log_committed, current_gen),
    }
    if detach is not None:
        extra.update(last_detach=detach, last_detach_us=now_us())
    return header._replace(**common, **extra)  # type: ignore[arg-type]


def rolled(header: DbHeader, generation: int) -> DbHeader | None:
    """Log Required up to ``generation`` after a roll; None when nothing changes (clean, or already there)."""
    if header.state != STATE_DIRTY_SHUTDOWN or header.log_required_max >= generation:
        return None
    return header._replace(sequence=header.sequence + 1, log_required_max=generation, log_committed=generation)


def stamped(header: DbHeader, kind: str, info: BackupInfo) -> DbHeader:
    """A backup of ``kind`` that ended successfully. A full backup also clears the incremental, differential
    and current-backup blocks: a new chain starts."""
    if kind == "full":
        return header._replace(
            sequence=header.sequence + 1,
            full_prev=info,
            inc_prev=EMPTY_BACKUP_INFO,
            diff_prev=EMPTY_BACKUP_INFO,
            full_cur=EMPTY_BACKUP_INFO,
            snapshot_cur=EMPTY_BACKUP_INFO,
        )
    return header._replace(sequence=header.sequence + 1, **{_SLOTS[kind]: info})  # type: ignore[arg-type]
