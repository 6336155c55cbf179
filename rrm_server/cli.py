"""``rrm-server`` command line: ``serve`` (default) and ``prepare-model``."""

from __future__ import annotations

import importlib.util
import sys

if sys.version_info < (3, 11) or importlib.util.find_spec("fastapi") is None:
    # The base install is the client and trainer adapters (Python >= 3.10, httpx + pydantic).
    sys.exit("the rrm-server service needs Python >= 3.11 and its server extra: "
             "pip install 'rrm-server[server]' (or [cpu] / [gpu] with the vLLM engine)")

import asyncio  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

import uvicorn  # noqa: E402
from pydantic import create_model  # noqa: E402
from pydantic_settings import BaseSettings, CliApp, CliSettingsSource  # noqa: E402

from rrm_server.ops.logging import configure_logging  # noqa: E402
from rrm_server.settings import Settings  # noqa: E402

if TYPE_CHECKING:
    from fastapi import FastAPI

    from rrm_server.serving.runtime import Runtime

logger = logging.getLogger("rrm_server.serve")


class DrainingServer(uvicorn.Server):
    """Graceful drain in two phases.

    1. For ``drain_delay`` seconds after the first signal: keep serving, /ready answers 503, so load
       balancers (Kubernetes endpoints) stop sending new work before the listener goes away.
    2. uvicorn's own shutdown: stop accepting, let in-flight requests finish for up to
       ``timeout_graceful_shutdown``, then cancel the rest (their engine work is aborted).
    A second signal skips the delay.
    """

    def __init__(self, config: uvicorn.Config, runtime: Runtime, drain_delay: float) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.drain_delay = drain_delay

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.runtime.draining or self.drain_delay <= 0:
            self.runtime.draining = True
            logger.info("draining: no new connections; waiting for in-flight requests", extra={"signal": sig})
            return super().handle_exit(sig, frame)
        self.runtime.draining = True
        logger.info("draining: /ready now 503; closing the listener in %.0f s", self.drain_delay,
                    extra={"signal": sig})
        # We run inside a signal handler: only call_soon_threadsafe is safe to touch the loop from here.
        loop = asyncio.get_running_loop()
        finish = super().handle_exit
        loop.call_soon_threadsafe(loop.call_later, self.drain_delay, finish, signal.SIGTERM, None)

USAGE = """usage: rrm-server [serve] [--flags]      start the HTTP service (see `rrm-server serve --help`)
       rrm-server prepare-model          convert the bundled model once and print its directory
       rrm-server cache-clear            delete this service's cached votes (--cache-url, --cache-prefix)
       rrm-server eval {pandalm,llmbar,jsonl,bon} [--flags]
                                         evaluate a judge on preference data (`rrm-server eval --help`)
Every flag also reads from an RRM_* environment variable (e.g. --max-votes = RRM_MAX_VOTES)."""

# What each command does, and the flags it reads (it accepts every `serve` flag; the rest do nothing).
COMMANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "serve": ("""\
Start the HTTP service (the judge API) on --host:--port, with the engine --engine chooses.
Every flag also reads from an RRM_* environment variable (--max-votes = RRM_MAX_VOTES); flags win.
Other commands: `rrm-server help`.""", ()),
    "prepare-model": ("""\
Convert the bundled judge (SmolLM2-135M-Instruct) once into --model-cache-dir and print its
directory; later runs find it there. With --model nothing is converted: it is printed as given.
Each flag also reads from an RRM_* environment variable (--model = RRM_MODEL); flags win.""",
                      ("model", "model_cache_dir")),
    "cache-clear": ("""\
Delete this service's cached votes from Redis (every key under --cache-prefix) and print how
many were deleted. Needs --cache-url: the in-memory cache lives and dies with the server.
Each flag also reads from an RRM_* environment variable (--cache-url = RRM_CACHE_URL); flags win.""",
                    ("cache_url", "cache_prefix", "cache_timeout")),
}


def parse_settings(command: str, args: list[str]) -> Settings:
    """``Settings`` from ``args`` and the environment, under ``rrm-server <command>``'s name. ``--help``
    here prints every flag (serve's help); ``main`` answers the other commands' ``--help`` first."""
    source = CliSettingsSource(Settings, cli_prog_name=f"rrm-server {command}")
    source.root_parser.description = COMMANDS[command][0]
    return CliApp.run(Settings, cli_args=args, cli_settings_source=source)


def command_help(command: str) -> str:
    """Help of a command that reads only a few of the settings: those flags, as `serve --help` shows them."""
    description, names = COMMANDS[command]

    class Base(BaseSettings):
        model_config = Settings.model_config

    fields: dict[str, Any] = {name: (Settings.model_fields[name].annotation, Settings.model_fields[name])
                              for name in names}
    subset = create_model(command.title().replace("-", "") + "Settings", __base__=Base, **fields)
    parser = CliSettingsSource(subset, cli_prog_name=f"rrm-server {command}").root_parser
    parser.description = description
    return parser.format_help()


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    if settings.ray:  # the same app as Serve's ingress, over engine replicas (rrm_server/ray_serve)
        from rrm_server.ray_serve.launch import serve_on_ray

        sys.exit(serve_on_ray(settings))
    from rrm_server.api.app import build_app

    run_server(build_app(settings), settings)


def run_server(app: FastAPI, settings: Settings) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, then drain (see ``DrainingServer``)."""
    # Our middleware writes the structured access log; uvicorn keeps the root logging we set up.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            log_config=None, access_log=False, timeout_graceful_shutdown=settings.drain_timeout)
    runtime = app.state.runtime
    server = DrainingServer(config, runtime, settings.drain_delay)
    failed: list[str] = []

    def fatal(message: str) -> None:  # on the event loop: the engine died past its restart budget
        failed.append(message)
        runtime.draining = True
        server.should_exit = True

    runtime.on_fatal = fatal
    server.run()
    if failed:
        logger.error("exiting with status %d: %s", EXIT_ENGINE_FAILED, failed[0])
        sys.exit(EXIT_ENGINE_FAILED)


# A supervisor (Kubernetes, systemd, docker --restart) restarts the process on a non-zero exit.
EXIT_ENGINE_FAILED = 3


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    command = "serve"
    if args and not args[0].startswith("-"):
        command = args.pop(0)
    if command == "eval":
        from rrm_server.eval.cli import main as eval_main

        sys.exit(eval_main(args))
    if command in COMMANDS and command != "serve" and ("-h" in args or "--help" in args):
        print(command_help(command), end="")
        return
    if command in ("-h", "help") or args[:1] == ["--help"] and command != "serve":
        print(USAGE)
        return
    if command == "serve":
        serve(parse_settings("serve", args))
    elif command == "prepare-model":
        configure_logging("info", "text")
        settings = parse_settings("prepare-model", args)
        from rrm_server.serving.runtime import resolve_model_path

        print(resolve_model_path(settings))
    elif command == "cache-clear":
        import asyncio

        from rrm_server.cache import build_cache

        settings = parse_settings("cache-clear", args)
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
