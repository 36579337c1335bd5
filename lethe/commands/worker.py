"""`lethe worker`: run the Faust worker that follows the demo database's changes.

The composition root: it reads the settings, lists the change topics
`<LETHE_CDC_TOPIC_PREFIX>.public.*` on the broker, builds the app
(`lethe.app.create_app`), installs the agents (`lethe.agents.install`) and runs
it until interrupted. Metrics are served at
http://LETHE_WEB_HOST:LETHE_WEB_PORT/metrics. Stop it with Ctrl-C or SIGTERM.
Faust and the Kafka clients are imported by `run` only, so other subcommands
start without them.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from lethe.errors import StackError
from lethe.settings import APP_ID, Settings

if TYPE_CHECKING:
    from lethe.app import LetheApp

LOG_LEVELS = ("debug", "info", "warning", "error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--app-id",
        default=APP_ID,
        help=f"Faust app id = Kafka consumer group and prefix of internal topics "
        f"(default: {APP_ID}); a new id starts from the beginning of the change topics",
    )
    parser.add_argument(
        "-l", "--loglevel", choices=LOG_LEVELS, default="info", help="log level (default: info)"
    )


def build_worker_app(settings: Settings, app_id: str, change_topic_names: list[str]) -> LetheApp:
    """The worker's app with every agent installed."""
    from lethe import agents
    from lethe.app import create_app

    app = create_app(settings, app_id=app_id, change_topic_names=change_topic_names)
    agents.install(app, metrics=app.metrics, changes=app.change_topic, deadletters=app.deadletters)
    return app


def run(args: argparse.Namespace) -> int:
    import faust

    from lethe.app import list_change_topics

    settings = Settings.from_env()
    names = list_change_topics(settings)
    if not names:
        raise StackError(
            f"no change topics matching {settings.cdc_topic_prefix}.public.* on "
            f"{settings.kafka_bootstrap}; is the Debezium connector registered (check with "
            "`lethe stack status`), and does LETHE_CDC_TOPIC_PREFIX match its topic.prefix?"
        )
    app = build_worker_app(settings, args.app_id, names)
    app.conf.datadir.parent.mkdir(parents=True, exist_ok=True)  # faust creates one level only
    worker = faust.Worker(app, loglevel=args.loglevel)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0
