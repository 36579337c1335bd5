"""`lethe demo`: the whole loop on the demo database, and `lethe demo seed`: its rows.

`lethe demo seed` writes a few thousand invented rows spread over the past years into every
demo table (`lethe.demo.data`): the same rows for the same `--seed` and month, upserted by id,
so running it again adds nothing (and sets rows that were deleted or anonymised back). Seed
before the Debezium source is registered and the rows are in its initial snapshot (`make
demo` does: `lethe stack up --only postgres`, `lethe demo seed`, `lethe stack up`).

`lethe demo` seeds (unless `--no-seed`), starts `lethe worker` enforcing under an
accelerated clock that starts now and runs a year every `--seconds-per-year` (default 60)
wall seconds, and redraws a summary per table until Ctrl-C: rows at the start and now,
change events read, commands due by the clock (the policy engine over the rows at the
start), commands issued and confirmed. The stack must be up (`lethe stack up`).
"""

from __future__ import annotations

import argparse

from lethe.demo import DEFAULT_SECONDS_PER_YEAR
from lethe.demo.data import DEFAULT_CUSTOMERS, DEFAULT_SEED
from lethe.errors import LetheError
from lethe.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds-per-year",
        type=float,
        default=DEFAULT_SECONDS_PER_YEAR,
        metavar="SECONDS",
        help=f"wall seconds per year of the clock (default: {DEFAULT_SECONDS_PER_YEAR:g})",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    parser.add_argument("--no-seed", action="store_true", help="do not seed the rows first")
    parser.add_argument(
        "--app-id", default=None, help="the worker's app id (default: lethe-demo-<UTC time>)"
    )
    _seed_arguments(parser)
    actions = parser.add_subparsers(
        dest="action",
        metavar="[seed]",
        help="seed: only write the demo rows; without it, the demo runs",
    )
    seed = actions.add_parser(
        "seed",
        help="write the demo rows into the demo database (idempotent)",
        description="Write the demo rows into the demo database; running it again adds nothing.",
    )
    _seed_arguments(seed)


def _seed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"random seed of the generated rows (default: {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=DEFAULT_CUSTOMERS,
        help=f"customers to generate; the other tables grow with it (default: {DEFAULT_CUSTOMERS})",
    )


def seed_database(settings: Settings, seed: int, customers: int) -> None:
    import psycopg

    from lethe.demo.data import generate
    from lethe.demo.seed import seed as write_rows

    data = generate(seed=seed, customers=customers)
    with psycopg.connect(settings.pg_dsn) as conn:
        result = write_rows(conn, data)
    written = sum(result.written.values())
    print(
        f"demo rows: {result.total} in {len(result.written)} tables, {written} written "
        f"({result.total - written} already there)"
    )


def require_healthy(settings: Settings, needed: tuple[str, ...]) -> None:
    """LetheError naming each `needed` part of the stack that does not answer (health only:
    a Docker stack's parts have no local process)."""
    from lethe import stack

    down = [part for part in stack.parts(settings) if part.name in needed and not part.healthy()]
    if down:
        names = ", ".join(f"{part.name} ({part.endpoint})" for part in down)
        raise LetheError(f"not answering: {names}; start the stack with `lethe stack up`")


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.action == "seed":
        require_healthy(settings, ("postgres",))
        seed_database(settings, args.seed, args.customers)
        return 0
    from lethe.demo.run import run_demo

    require_healthy(settings, ("postgres", "kafka", "connect", "source", "sink"))

    if not args.no_seed:
        seed_database(settings, args.seed, args.customers)
    return run_demo(
        settings,
        seconds_per_year=args.seconds_per_year,
        duration=args.duration,
        app_id=args.app_id,
    )
