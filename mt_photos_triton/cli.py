"""`mt-photos-triton`: export models, serve the API (with an embedded Triton server or an existing one), bench."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from pathlib import Path

from mt_photos_triton.families import FAMILIES

log = logging.getLogger("mt_photos_triton")

def default_repository() -> Path:
    """MODEL_REPOSITORY, else the checkout's model_repository/ (when run from a checkout), else ./model_repository."""
    from mt_photos_triton.repository import templates

    if os.environ.get("MODEL_REPOSITORY"):
        return Path(os.environ["MODEL_REPOSITORY"])
    committed = templates()
    return committed if committed.name == "model_repository" else Path("model_repository")


class JsonFormatter(logging.Formatter):
    """One JSON object per line (LOG_FORMAT=json), for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging() -> None:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler()
    if os.environ.get("LOG_FORMAT", "text").lower() == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the bench's output


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mt-photos-triton", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the MT Photos API (starts an embedded Triton unless --triton-url)")
    serve.add_argument("--repository", type=Path, default=None, help="model repository (env MODEL_REPOSITORY)")
    serve.add_argument("--host", default=None, help="adapter address (env HTTP_HOST, default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=None, help="adapter port (env HTTP_PORT, default 8060)")
    serve.add_argument("--triton-url", default=None, help="use this Triton server (host:port) instead of starting one")

    export = commands.add_parser("export", help="download and install models into the repository")
    export.add_argument("family", choices=[*FAMILIES, "auto"], help="'auto' exports every family it can")
    export.add_argument(
        "--model", default=None,
        help="model name (default: what the family's variables name, e.g. CLIP_VISUAL_MODEL_NAME, else the "
             "reference service's default)",
    )
    export.add_argument("--from", dest="source", default=None,
                        help="local directory, zip file or URL to use, taken as that model")
    export.add_argument("--repository", type=Path, default=None, help="model repository (env MODEL_REPOSITORY)")
    export.add_argument("--force", action="store_true", help="re-export even when the files are already there")

    add_start_parser(commands)

    bench = commands.add_parser("bench", help="measure us and the in-process reference side by side")
    bench.add_argument(
        "family", choices=[*FAMILIES, "predict", "gpu", "memory"],
        help="a family, immich's /predict vs MT routes, gpu, or memory (every family loaded)",
    )
    bench.add_argument("args", nargs=argparse.REMAINDER, help="options of that family's bench (see --help)")
    return parser


def run_export(args: argparse.Namespace) -> int:
    """Each family's model: `--model`, else the one its variables name (chosen_model). Variables that name
    models which cannot be served together are refused before anything is exported."""
    from export.common import ExportError
    from mt_photos_triton.families import ModelChoiceError, chosen_model

    if args.family == "auto" and (args.model or args.source):
        log.error("export auto takes each family's model from its variables; --model and --from need a family")
        return 2
    repository = args.repository or default_repository()
    families = list(FAMILIES) if args.family == "auto" else [args.family]
    try:
        models = {family: args.model or chosen_model(FAMILIES[family], os.environ) for family in families}
    except ModelChoiceError as error:
        log.error("not exported: %s", error)
        return 2
    failures = 0
    for family, model in models.items():
        module = importlib.import_module(f"export.{family}")
        try:
            # without --model the family takes the variables' choice itself (checked above)
            result = module.export(repository=repository, model=args.model, source=args.source, force=args.force)
        except ExportError as error:
            failures += 1
            log.error("%s: %s not exported: %s", family, model, error)
            continue
        log.info("%s", result.summary())
    # `auto` prepares what it can: a family that cannot be obtained here is reported, not fatal
    return 0 if args.family == "auto" or failures == 0 else 1


def run_serve(args: argparse.Namespace) -> int:
    from mt_photos_triton.serve import serve

    return serve(
        repository=args.repository or default_repository(),
        host=args.host,
        port=args.port,
        triton_url=args.triton_url or os.environ.get("TRITON_URL") or None,
    )


def add_start_parser(commands: argparse._SubParsersAction) -> None:
    start = commands.add_parser(
        "start", help="the single container's entry: `export auto` into the repository, then `serve` it"
    )
    start.add_argument("--repository", type=Path, default=None, help="model repository (env MODEL_REPOSITORY)")
    start.add_argument("--host", default=None, help="adapter address (env HTTP_HOST, default 0.0.0.0)")
    start.add_argument("--port", type=int, default=None, help="adapter port (env HTTP_PORT, default 8060)")


def run_start(args: argparse.Namespace) -> int:
    """Export the models the variables name (the first start downloads them; later starts find them up to date),
    then serve whatever the repository holds with the embedded Triton: mt-photos-ml's one-command container."""
    repository = args.repository or default_repository()
    repository.mkdir(parents=True, exist_ok=True)
    export = argparse.Namespace(family="auto", model=None, source=None, repository=repository, force=False)
    run_export(export)  # `auto` reports a family it cannot obtain and goes on; serve then says what is missing
    serve = argparse.Namespace(repository=repository, host=args.host, port=args.port, triton_url=None)
    return run_serve(serve)


def run_bench(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"mt_photos_triton.bench.{args.family}")
    return int(module.main(args.args) or 0)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = build_parser().parse_args(argv)
    runners = {"serve": run_serve, "export": run_export, "start": run_start, "bench": run_bench}
    return runners[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
