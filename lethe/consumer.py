"""The worker's Kafka consumer: Faust's own, except that after every rebalance each
change-topic partition without a committed offset is read from its beginning, that
no change record reaches a stream while a rebalance is in progress, and that a partition
it cannot decompress is set aside, said, and the others read on.

Why: in faust-streaming 0.15.3 with aiokafka 0.14.0 a rebalance (a second worker
joining, a worker leaving) can hand records to Faust that it then discards: a fetch
started before the rebalance was given Faust's live set of active partitions, which
the rebalance empties, and aiokafka reads an empty set as "every partition"
(`aiokafka/consumer/fetcher.py` `fetched_records`); Faust drops what it fetched while
the flow is stopped, or for partitions not yet resumed (`faust/transport/consumer.py`
`getmany`, ~739-774), and relies on `perform_seek()` (~565) to read them again. That
seek goes to the committed offset only when it is above 0
(`aiokafka/consumer/consumer.py` `seek_to_committed`, ~897-902). A partition nothing
was ever committed for keeps the position after the dropped records: they are
lost, with no log line. It happens when the event loop stalls during a rebalance
(GC, a busy machine) while the first records of such a partition arrive.

What Lethe does: every seek to committed offsets (`seek_to_committed`, which Faust
calls from `perform_seek` when it resumes the streams after a rebalance,
`faust/tables/recovery.py` ~316-322 and ~649-656, and when it drops a fetch taken
while the flow was stopped) also seeks each assigned partition whose committed offset
is missing (or 0) to its beginning, before Faust resumes the flow. Such a partition
has had nothing committed, so reading it again from its beginning can only repeat
records (counted twice), never skip one. Only partitions whose offsets Faust
commits are concerned: table changelogs (Faust's recovery positions them itself)
and topics read without acks are left alone.

Second loss, with a table (the worker's `locations`): Faust empties the stream buffers
when it resumes the streams at the end of a rebalance, after it has resumed and sought
the partitions, and a record buffered in between is discarded for good (`getmany` says
how). Lethe does not hand such a partition's records to the streams until the rebalance
is over (`app.rebalancing` false); what it held back is fetched again after a seek to
committed offsets (and to the beginning where none is), so it is read once more, never
skipped.

Third: the assign agent forwards through its own producer (`lethe.forwarding`), not
Faust's, so Faust's flush before a commit does not cover those records. Before every
commit this consumer also waits until the forwarder has delivered everything it was handed
(`_commit`); if the broker refused one for good, it commits nothing, now or later, and
crashes the consumer (as Faust does when its own producer fails), so that the worker stops
and the next one processes every record after the committed offsets again.

Fourth: a partition whose records this process cannot decompress (aiokafka's
`UnsupportedCodecError`: the producer used snappy, lz4 or zstd and `cramjam` is missing)
crashed Faust's fetcher, and the worker exited 1 without naming the topic or the fix, before
processing the other topics' records of the same fetch. The consumer now sets that partition
aside (`set_aside_unreadable`): it stops reading it, logs an ERROR naming topic, partition,
codec and fix, sets `lethe_unreadable_partitions` (alert `LetheUnreadablePartition`), seeks
the others back to their committed offsets (the failed fetch may have taken some of their
records) and goes on; the partition's records wait, uncommitted, for a worker with the codec.

Fifth, speed: Faust hands each fetched record to the streams through
`Service.wait_first(callback(record), suspend_flow.wait())`, which makes four asyncio tasks
and an `asyncio.wait` per record (about a third of a bare agent's time per event,
docs/benchmarks.md (a)), so that a hand-over blocked (a full stream buffer, the flow stopped
by a rebalance) gives way when the flow is suspended. `_drain_messages` is Faust's loop with
the same hand-over (`hand_over`), except that a callback that completes at its first step
(the usual case: room in the buffer, the flow running) is not made a task; one that has to
wait is run on exactly as Faust does, under `wait_first`.

The worker uses it through `lethe.app.LetheApp`; an operator has nothing to set. The
log says at INFO which partitions were sent back to their beginning, and which had
records fetched during a rebalance.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Mapping
from typing import Any, ClassVar, Final

from aiokafka.errors import IllegalStateError, UnsupportedCodecError
from faust.streams import current_event
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from lethe.forwarder import ForwardFailed
from policy.envelope import rejection_of_bug

log = logging.getLogger(__name__)

SEEK_RETRY_S: Final = 1.0
FETCH_MAX_WAIT_MS: Final = 100
"""How long the broker may hold a fetch of partitions with nothing new (Faust's: 1500 ms). A
caught-up partition counts as processed up to its last fetch (`lethe.agents.watermarks`), so
that wait is how stale its watermark may be: every stage waits that much longer to be
issued. 100 ms costs an idle worker about ten empty fetches a second."""
AGENT_FAILURE_ATTRIBUTE: Final = "agent_failure"
"""The app attribute set when an agent failed on a record (`Consumer.on_task_error`): from
then on the consumer commits nothing."""


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, its aiokafka consumer's fetch wait `FETCH_MAX_WAIT_MS`."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by its fetcher at start
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer; partitions without a committed offset restart at their
    beginning whenever Faust seeks to committed offsets, and no record reaches a stream
    while a rebalance is in progress; its fetches wait `FETCH_MAX_WAIT_MS` at most."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def hand_over(
        self, callback: Callable[[Message], Awaitable[Any]], message: Message
    ) -> None:
        """Hand `message` to the streams as Faust does, `wait_first(callback(message),
        suspend_flow.wait())`: done when the callback is, or given up (the callback
        cancelled) when the flow is suspended first. A callback that completes at its first
        step is run here, without that call's four tasks; one that has to wait (a full
        stream buffer, the flow stopped) goes on under `wait_first`, from where it waits."""
        handing = callback(message)
        flowing = not (
            self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set()
        )
        if flowing and isinstance(handing, Coroutine):
            try:
                waiting_on = handing.send(None)
            except StopIteration:
                return
            handing = _Resumed(handing, waiting_on)
        await self.wait_first(handing, self.suspend_flow.wait())

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover
        """Faust 0.15's fetch loop, each record handed over by `hand_over` (see module)."""
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        hand_over = self.hand_over
        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                records = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in records:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        read = get_read_offset(tp)
                        if read is None or offset >= read:
                            gap = offset - (read or 0)
                            if gap > 1 and read and acks_enabled_for(message.topic):
                                await self._add_gap(tp, read + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await hand_over(callback, message)
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev("DROPPED MESSAGE ROFF %r", offset)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """Faust's fetch, minus the records of partitions whose offsets Faust commits that
        arrive while a rebalance is in progress: those are fetched again after a seek to
        committed offsets (`seek_back`), once the rebalance is over.

        Why: in an app with a table, Faust's recovery resumes the flow control to read the
        changelogs (`Recovery._restart_recovery`, "Resuming flow..."), then, in
        `Recovery.on_recovery_completed`, resumes the stream partitions, seeks them to their
        committed offsets (one request per partition, ~0.2 s) and resumes the flow control
        again: `FlowControlEvent.resume` empties every stream buffer. A record fetched
        after that seek and buffered before that resume is discarded, never processed nor
        acknowledged, while Faust's read offset and the consumer's position are already
        past it, and Faust commits the next records' offsets past it (nothing was committed
        before, so it sees no gap). Seen on 2026-11-30: offset 0 of a partition lost, 25
        committed. `app.rebalancing` is true from the start of a rebalance until
        `App.on_rebalance_end`, which Faust calls after that last resume, so a record handed
        over afterwards is never discarded that way.
        """
        held_back: set[TP] = set()
        try:
            async for tp, message in super().getmany(timeout):
                if self.app.rebalancing and self._commits_for(tp):
                    held_back.add(tp)
                    continue
                yield tp, message
        except UnsupportedCodecError as exc:
            await self.set_aside_unreadable(exc)
            return
        if held_back:
            log.info(
                "Records fetched during a rebalance are read again once it ends: %s",
                _names(sorted(held_back)),
            )
            await self.seek_back(held_back)

    async def seek_back(self, held_back: set[TP]) -> None:
        """Seek to committed offsets (Faust's `perform_seek`, then the partitions without
        one to their beginning) so that the held-back records are fetched again; retried
        every `SEEK_RETRY_S` until it succeeds, the partitions are reassigned (the new
        assignment ends with its own seek) or the worker stops."""
        while not self.should_stop:
            try:
                await self.perform_seek()
                return
            except IllegalStateError:
                return
            except Exception:
                log.exception(
                    "Could not seek back %s to committed offsets; retrying in %.0fs",
                    _names(sorted(held_back)),
                    SEEK_RETRY_S,
                )
                await self.sleep(SEEK_RETRY_S)

    unreadable_module: ClassVar[str] = "aiokafka."
    """Where `unreadable_partition` looks for the partition (tests stand in for aiokafka)."""

    async def set_aside_unreadable(self, exc: UnsupportedCodecError) -> None:
        """A partition whose records this process cannot decompress (a codec library
        missing): stop reading it, say so (log and `lethe_unreadable_partitions`), and go on
        with the others, from their committed offsets (aiokafka may have taken records of
        other partitions in the fetch that failed, and dropped them with it). Nothing of the
        unreadable partition is committed past what was processed; once the worker runs with
        the codec, it reads the partition from there. It is tried again at most once per
        rebalance (and set aside again): no loop on it. The gauge stays 1 until the worker
        restarts. Without the partition (the
        error did not show it) the error goes on: Faust stops the worker, exit code 1."""
        tp = unreadable_partition(exc, self.unreadable_module)
        codec = codec_of(exc)
        if tp is None:
            log.critical("%s", unreadable_message(None, codec, exc))
            raise exc
        self.pause_partitions([tp])
        metrics = getattr(self.app, "metrics", None)
        if metrics is not None:
            metrics.unreadable_partitions.labels(topic=tp.topic, partition=str(tp.partition)).set(1)
        log.error("%s", unreadable_message(tp, codec, exc))
        await self.seek_back({tp})

    async def on_task_error(self, exc: BaseException) -> None:
        """An agent raised on a record (Faust calls this from `App._on_agent_error`). Faust
        commits here, past that record, and restarts the agent: tried on 2026-11-30, the
        record was never processed again. Lethe's agents never raise for bad input (it is
        dead-lettered); one that raises met a bug, or the broker or the disk failing, and
        skipping its record would leave a row untracked, its retention never enforced. So
        nothing is committed from now on (`_commit`), the log says what failed where, and
        the agent, run under Faust's `CrashingSupervisor`, stops the worker: exit code 1
        (`LetheWorkerDown` while none runs; `LetheWorkerRestarting` when it is restarted into
        the same failure). Restarted, it reads the record again."""
        setattr(self.app, AGENT_FAILURE_ATTRIBUTE, exc)
        event = current_event()
        where = " outside any record"
        if event is not None:
            message = event.message
            where = f" on {message.topic}[{message.partition}]@{message.offset}"
        trace = rejection_of_bug(exc).trace if isinstance(exc, Exception) else None
        log.critical(
            "An agent failed%s with %s (a bug in Lethe, or the broker or the disk "
            "failing). The worker stops (exit code 1) and commits neither that record nor any "
            "after it: restart it (a service manager does) and it processes them again. If it "
            "fails again on the same record, report it with this log.\n%s",
            where,
            type(exc).__qualname__,
            trace or "",
        )

    def _commits_for(self, tp: TP) -> bool:
        """Whether Faust commits offsets for `tp` (read with acks, not a table changelog)."""
        return self.app.topics.acks_enabled_for(tp.topic) and not self._is_changelog_tp(tp)

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        """Commit only once the forwarder (`app.forwarder`, when the app has one) delivered
        every record it was handed, never after it failed; and once every dead letter handed
        to `app.dead_letter_pipeline` (`lethe.agents.delivery.DeadLetterPipeline`) is
        delivered, never after one was lost; never after an agent failed on a record
        (`on_task_error`)."""
        if getattr(self.app, AGENT_FAILURE_ATTRIBUTE, None) is not None:
            return False  # an agent failed on a record: nothing past it (on_task_error)
        forwarder = getattr(self.app, "forwarder", None)
        if forwarder is not None and not await forwarder.settle(lambda: self.should_stop):
            if forwarder.failure is not None:
                await self.crash(ForwardFailed(forwarder.failure))
            return False
        dead_letters = getattr(self.app, "dead_letter_pipeline", None)
        if dead_letters is not None and not await dead_letters.settle(lambda: self.should_stop):
            return False
        return bool(await super()._commit(offsets))

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        await self.seek_uncommitted_to_beginning(committed)
        return committed

    async def seek_uncommitted_to_beginning(self, committed: Mapping[TP, int | None]) -> None:
        """Seek every partition in `committed` (partition -> committed offset, as aiokafka
        returns it) whose offset is missing or 0 to its beginning, if Faust commits
        offsets for its topic (read with acks, not a table changelog).

        aiokafka skips a committed 0 as well as a missing one, so both are sent back:
        0 means nothing was read either. Topics read without acks (Faust's own
        `<app id>-__assignor-__leader`) never have a commit and are left where they are.
        If a new rebalance took the partitions away meanwhile, nothing is done: that
        rebalance ends with its own seek.

        The beginning is asked for (their earliest offsets), then sought to: aiokafka's
        `seek_to_beginning` would leave the position unknown until its reset is done, and
        Faust's livelock check (`verify_event_path`, every 7 s outside a rebalance)
        stops the worker with an AssertionError when it meets such a position.
        """
        uncommitted = sorted(
            tp for tp, offset in committed.items() if not offset and self._commits_for(tp)
        )
        if not uncommitted:
            return
        try:
            beginnings = await self._thread.earliest_offsets(*uncommitted)
            await self._thread.seek_wait({tp: beginnings[tp] for tp in uncommitted})
        except IllegalStateError:
            log.info(
                "Partitions without committed offset were reassigned before they could be "
                "read from their beginning; the next rebalance seeks them: %s",
                _names(uncommitted),
            )
            return
        log.info(
            "Reading %d partition(s) without committed offset from their beginning: %s",
            len(uncommitted),
            _names(uncommitted),
        )


class _Resumed(Awaitable[Any]):
    """A coroutine taken up after its first step: what `yield from` does with it."""

    __slots__ = ("coroutine", "waiting_on")

    def __init__(self, coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self.coroutine = coroutine
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine = self.coroutine
        waiting_on = self.waiting_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:
                try:
                    waiting_on = coroutine.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting_on = coroutine.send(sent)
                except StopIteration as done:
                    return done.value


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with Lethe's `Consumer`."""

    Consumer: ClassVar[Any] = Consumer


def _names(tps: list[TP]) -> str:
    """`topic[0,1], other[0]` for partitions sorted by topic."""
    by_topic: dict[str, list[int]] = {}
    for tp in tps:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return ", ".join(
        f"{topic}[{','.join(map(str, partitions))}]" for topic, partitions in by_topic.items()
    )


CODEC_LIBRARIES: Final = "pip install 'aiokafka[lz4,snappy,zstd]' (it brings cramjam)"
"""How to give the worker every codec a Kafka producer may use."""


def unreadable_partition(exc: BaseException, module: str = "aiokafka.") -> TP | None:
    """The partition whose records aiokafka could not decompress. Its error does not name
    it; the traceback does: the innermost frame of a `module` module with a `tp` local
    (aiokafka's `PartitionRecords._unpack_records`, `Fetcher.fetched_records`). None if no
    frame has one."""
    found: TP | None = None
    frame = exc.__traceback__
    while frame is not None:
        if str(frame.tb_frame.f_globals.get("__name__", "")).startswith(module):
            candidate = frame.tb_frame.f_locals.get("tp")
            topic = getattr(candidate, "topic", None)
            partition = getattr(candidate, "partition", None)
            if isinstance(topic, str) and isinstance(partition, int):
                found = TP(topic, partition)
        frame = frame.tb_next
    return found


def codec_of(exc: BaseException) -> str:
    """The codec aiokafka's `UnsupportedCodecError` names (`snappy`, `lz4`, `zstd`, `gzip`, or
    the unknown codec's number, `0x05`); `unknown` when its text names none."""
    text = str(exc)
    named = re.search(r"for (\w+) compression codec", text)
    if named:
        return named.group(1)
    number = re.search(r"codec (0x[0-9a-fA-F]+)", text)
    return number.group(1) if number else "unknown"


def unreadable_message(tp: TP | None, codec: str, exc: BaseException) -> str:
    """What the worker logs about an unreadable partition: what, where, and the fix."""
    where = f"{tp.topic}[{tp.partition}]" if tp is not None else "a change topic"
    then = (
        "Its records are not processed (nothing is committed past them) until the worker "
        "runs with the codec; the other partitions go on"
        if tp is not None
        else "The worker stops"
    )
    return (
        f"Cannot read {where}: its records are compressed with {codec}, which this worker "
        f"cannot decompress ({exc}). {then}. Fix: give the worker the codec libraries "
        f"({CODEC_LIBRARIES}) and restart it; or have the topic's producer use a codec the "
        "worker reads (compression.type), and restart it."
    )
