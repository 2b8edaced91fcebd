"""One store's bytes for a backup: the pinned durable state, every used page verified on the way out.

A :class:`DatabaseCopy` is opened by :meth:`BackupSession.open_database
<shadowstore.engine.backup.BackupSession.open_database>`, which pins the store's durable header: checkpoints
running meanwhile write elsewhere, so the pages up to the header's page count stay as they were. Its chunks are
the two header pages (with the running backup recorded in them), then the pages in big blocks read without the
page cache. Each used page must pass its checksum (-1018 fails the session); free pages go out as zeros, since
they may hold anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from shadowstore.errors import BackupAbortedError
from shadowstore.format.dbheader import DbHeader
from shadowstore.format.page import PageError, first_bad_page, verify_page
from shadowstore.io.blockread import Block

if TYPE_CHECKING:
    from shadowstore.engine.backup import BackupSession
    from shadowstore.engine.store import Store

COPY_BLOCK = 8 << 20  # bytes per read: big reads keep a virtual disk busy between reads and writes


class DatabaseCopy:
    """The bytes of one store as of its pinned durable header: header pages, then every page up to the
    header's page count; used pages are verified, free pages are written as zeros."""

    def __init__(self, session: BackupSession, store: Store) -> None:
        self.session = session
        self.store = store
        self.header: DbHeader = store.pin()
        # why after the pin: every transaction in the pinned state was given its time before this
        self.max_commit_us = session.sg.log.last_time
        self.size = self.header.page_count * store.page_size
        self.read = 0
        self._used = store.space_map_of(self.header)

    def __enter__(self) -> DatabaseCopy:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()

    def chunks(self, block_size: int = COPY_BLOCK) -> Iterator[bytes | Block]:
        """The file content: the header pages as bytes, then blocks that lend their buffer (see
        :class:`~shadowstore.io.blockread.Block`: the consumer releases each one). Raises
        ReadVerifyFailureError (events 474 and 217) for a damaged used page; the session is then aborted,
        nothing is stamped or truncated."""
        store, header, page_size = self.store, self.header, self.store.page_size
        backup_header = header._replace(full_cur=self.session.current_info(header)).pack()
        yield backup_header + backup_header
        self.read = 2 * page_size
        assert store.file is not None
        end = header.page_count * page_size
        with store.file.handle.read_blocks(2 * page_size, end, max(1, block_size // page_size) * page_size) as blocks:
            for block in blocks:
                try:
                    chunk = self._checked(block)
                except BaseException:
                    block.release()
                    raise
                self.read += len(chunk)
                self.session.add_progress(len(chunk))
                yield chunk
        if self.read != end:
            pgno = self.read // page_size
            self.session.fail_database(store, pgno, f"the file ends inside page {pgno}", None, None)
        self.session.database_done(self)

    def _checked(self, block: Block) -> bytes | Block:
        """``block`` with every used page verified; free pages are copied as zeros (they may hold anything
        and need not verify), in a new chunk (the block is then released)."""
        if self.session.ended:
            raise BackupAbortedError(f"the backup session of {self.session.sg.name!r} was ended while copying")
        page_size = self.store.page_size
        first = block.offset // page_size
        count = len(block) // page_size
        if count * page_size != len(block):
            pgno = first + count
            self.session.fail_database(self.store, pgno, f"the file ends inside page {pgno}", None, None)
        view = block.data
        used = self._used[first : first + count]
        bad = first_bad_page(view, first, page_size, used)
        if bad is not None:
            index = bad - first
            try:
                verify_page(view[index * page_size : (index + 1) * page_size], bad)
            except PageError as exc:
                self.session.fail_database(self.store, bad, str(exc), exc.stored, exc.computed)
        if used.find(0) == -1:
            return block
        zero_page = bytes(page_size)
        chunk = b"".join(view[i * page_size : (i + 1) * page_size] if used[i] else zero_page for i in range(count))
        block.release()
        return chunk

    def close(self) -> None:
        if self.header is not None:
            self.store.unpin(self.header.dbtime)
            self.session.database_closed(self)
