"""``rrm-server`` command line: ``serve`` (default) and ``prepare-model``."""

from __future__ import annotations

import sys

from pydantic_settings import CliApp

from rrm_server.ops.logging import configure_logging
from rrm_server.settings import Settings

USAGE = """usage: rrm-server [serve] [--flags]      start the HTTP service (see `rrm-server serve --help`)
       rrm-server prepare-model          convert the bundled model once and print its directory
       rrm-server cache-clear            delete this service's cached votes (--cache-url, --cache-prefix)
Every flag also reads from an RRM_* environment variable (e.g. --max-votes = RRM_MAX_VOTES)."""


def serve(settings: Settings) -> None:
    import uvicorn

    from rrm_server.api.app import build_app

    configure_logging(settings.log_level, settings.log_format)
    app = build_app(settings)
    # Our middleware writes the structured access log; uvicorn keeps the root logging we set up.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level, log_config=None,
                access_log=False, timeout_graceful_shutdown=30)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    command = "serve"
    if args and not args[0].startswith("-"):
        command = args.pop(0)
    if command in ("-h", "help") or args[:1] == ["--help"] and command != "serve":
        print(USAGE)
        return
    if command == "serve":
        serve(CliApp.run(Settings, cli_args=args, cli_prog_name="rrm-server serve"))
    elif command == "prepare-model":
        configure_logging("info", "text")
        settings = CliApp.run(Settings, cli_args=args, cli_prog_name="rrm-server prepare-model")
        print(settings.resolve_model_path())
    elif command == "cache-clear":
        import asyncio

        from rrm_server.cache import build_cache

        settings = CliApp.run(Settings, cli_args=args, cli_prog_name="rrm-server cache-clear")
        if not settings.cache_url:
            print("no --cache-url / RRM_CACHE_URL: the in-memory cache lives and dies with the server", file=sys.stderr)
            sys.exit(2)

        async def clear() -> int:
            cache = build_cache(settings)
            try:
                return await cache.clear()
            finally:
                await cache.close()

        print(f"deleted {asyncio.run(clear())} keys under {settings.cache_prefix!r}")
    else:
        print(f"unknown command {command!r}\n{USAGE}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
