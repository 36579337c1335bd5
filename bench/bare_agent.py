"""A bare Faust agent: consume a topic, orjson-parse each value, nothing else.

Started by `bench/ingest_bench.py` as a subprocess, the baseline the worker is compared with.
It writes one JSON line to its standard output when the N-th event has been parsed,
`{"events": N, "seconds": S, "cpu_seconds": C}` (S from the first event parsed to the N-th,
C the CPU time the process, all its threads, spent meanwhile), and keeps running
until stopped (SIGTERM). It runs under the worker's Faust worker class, which keeps the root
logger at the chosen level as `lethe worker` does.
Run by hand:
`.venv/bin/python bench/bare_agent.py TOPIC --app-id ID --events N [--fetch-bytes B
--poll-records R --buffer E] [--send-to TOPIC [--produce-with confluent]]`. Without a tuning
flag Faust's defaults apply. `--send-to` also forwards each record with one Faust send, as
the worker's first stage does; with `--produce-with confluent`, with a confluent-kafka
producer instead, flushed before the N-th event is timed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

import faust
import orjson
from confluent_kafka import Producer

from lethe.commands.worker import quiet_root_worker


def build_app(args: argparse.Namespace, datadir: str) -> faust.App:
    tuning: dict[str, Any] = {}
    if args.fetch_bytes is not None:
        tuning["consumer_max_fetch_size"] = args.fetch_bytes
    if args.poll_records is not None:
        tuning["broker_max_poll_records"] = args.poll_records
    if args.buffer is not None:
        tuning["stream_buffer_maxsize"] = args.buffer
    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        datadir=datadir,
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=1,
        web_enabled=False,
        **tuning,
    )
    topic = app.topic(
        args.topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    wanted = args.events
    output = None
    if args.send_to is not None:
        output = app.topic(
            args.send_to,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    producer = None
    if args.send_to is not None and args.produce_with == "confluent":
        output = None
        producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})

    async def bare(stream: Any) -> None:
        count = 0
        first = 0.0
        first_cpu = 0.0
        async for event in stream.events():
            orjson.loads(event.message.value)
            if output is not None:
                await output.send(key=event.message.key, value=event.message.value)
            elif producer is not None:
                produce(producer, args.send_to, event.message.key, event.message.value)
            count += 1
            if count == 1:
                first = time.perf_counter()
                first_cpu = time.process_time()
            if count == wanted:
                if producer is not None:
                    producer.flush(60)
                seconds = time.perf_counter() - first
                cpu = time.process_time() - first_cpu
                report = {"events": count, "seconds": seconds, "cpu_seconds": cpu}
                # fd 1, not print: the Faust worker redirects sys.stdout to its log
                os.write(1, orjson.dumps(report) + b"\n")

    app.agent(topic, name="bench.bare", concurrency=1)(bare)
    return app


def produce(producer: Producer, topic: str, key: bytes | None, value: bytes | None) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key)
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topic")
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--fetch-bytes", type=int)
    parser.add_argument("--poll-records", type=int)
    parser.add_argument("--buffer", type=int)
    parser.add_argument("--send-to", help="also send each record to this topic")
    parser.add_argument(
        "--produce-with",
        choices=("faust", "confluent"),
        default="faust",
        help="send with Faust (default) or produce with confluent-kafka, flushed at the end",
    )
    parser.add_argument("--loglevel", default="warning")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lethe-bench-bare-") as datadir:
        app = build_app(args, datadir)
        worker = quiet_root_worker()(app, loglevel=args.loglevel)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            sys.exit(exc.code)


if __name__ == "__main__":
    main()
