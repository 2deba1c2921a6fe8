"""The ``sortloop`` command: the runtime's own commands (``run``, ``detect``, ``sim render``,
``config check|schema|example``, ``tokens``), and those other parts add through the ``sortloop.commands`` entry
points (``training``: ``train``, ``export``, ``eval``, ``promote``, ``data`` …; ``ui``: ``users``, ``audit``,
``report`` and the console's mount into ``run``). A part whose extra is not installed still lists its commands;
they say which extra to install.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import signal
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from station.cli_access import tokens_app
from station.config import ConfigError, StationConfig, load_config
from station.resources import shipped_file

if TYPE_CHECKING:
    from station.detect import ImageResult
    from station.runtime import Built

app = typer.Typer(add_completion=False, no_args_is_help=True, help="sortloop: a sorting and triage station.")
config_app = typer.Typer(no_args_is_help=True, help="Check and describe the station configuration.")
sim_app = typer.Typer(no_args_is_help=True, help="The conveyor simulator.")
app.add_typer(config_app, name="config")
app.add_typer(sim_app, name="sim")
app.add_typer(tokens_app, name="tokens")

DEFAULT_CONFIG = Path("configs/station.yaml")
log = logging.getLogger(__name__)
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Station config YAML.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _load(path: Path | None, allow_empty: bool = False) -> StationConfig:
    """``path``; else ``configs/station.yaml`` of the current folder; else the default config the station ships."""
    try:
        if path is None:
            path = DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else shipped_file("station.yaml")
        return load_config(path, allow_empty=allow_empty)
    except ConfigError as exc:
        raise fail(str(exc)) from None


@config_app.command("check")
def config_check(
    file: Path,
    allow_empty: Annotated[bool, typer.Option(help="Take an empty file as every default.")] = False,
    connect: Annotated[bool, typer.Option(help="Try the store URL (connect, or for SQLite its folder).")] = True,
) -> None:
    """Validate a config file and try its store; errors name the YAML path and the fix."""
    cfg = _load(file, allow_empty)
    if connect:
        from station.store.engine import try_store

        try:
            try_store(cfg)
        except ConfigError as exc:
            raise fail(f"{file}: {exc}") from None
    typer.echo(f"{file}: ok")


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of the config, every field described."""
    typer.echo(json.dumps(StationConfig.model_json_schema(), indent=2))


@config_app.command("example")
def config_example() -> None:
    """Print the default config as commented YAML (how configs/station.yaml is made)."""
    from station.config import commented_yaml

    typer.echo("# sortloop station configuration. Every key is described; `sortloop config schema` gives the\n"
               "# JSON schema. Paths are relative to the repository root (an installed station: the folder it\n"
               "# runs in).\n" + commented_yaml(StationConfig()))


@sim_app.command("render")
def sim_render(
    out: Annotated[Path, typer.Option(help="Output folder (images/, labels/, data.yaml).")],
    n: Annotated[int, typer.Option(min=1, help="Number of frames.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    width: int = 640, height: int = 640,
    sprites: Annotated[Path | None, typer.Option(help="Folder of class/*.png RGBA cut-outs.")] = None,
    classes: Annotated[str | None, typer.Option(help="Only these taxonomy classes, comma-separated (e.g. "
                                                     "metal,paper,battery); default: every class.")] = None,
) -> None:
    """Write simulator frames with exact YOLO labels."""
    from station.simulator import RenderError, render_dataset

    wanted = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    try:
        summary = render_dataset(out, n, seed=seed, width=width, height=height, sprites=sprites, classes=wanted)
    except RenderError as exc:
        raise fail(f"sim render: {exc}") from None
    typer.echo(json.dumps(summary.to_dict()))


@app.command("detect")
def detect(
    paths: Annotated[list[Path], typer.Argument(help="Images or folders (walked).")],
    model: Annotated[Path | None, typer.Option(help="ONNX model (default: the config's model).")] = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image per line.")] = False,
    detector_only: Annotated[bool, typer.Option("--detector-only", help="The raw detector: no decision, no "
                                                "second look by the crop classifier.")] = False,
) -> None:
    """What the station would decide for the items of still photos: the detector, then for each box the
    decision line's rule with the crop classifier's second look (stream, hazard, reason). Exits 1 when any
    input could not be read (a summary on stderr)."""
    from station.detect import ModelError, detect_paths
    from station.runtime import classifier_path, load_classifier, load_detector, promoted_model
    from station.still import StillDecider
    from station.taxonomy import load_taxonomy

    cfg = _load(config)
    taxonomy = load_taxonomy(cfg.taxonomy_file())
    try:
        # no --model: what the station runs (the registry's promoted detector while watch_registry is on);
        # an explicitly named model may carry other classes (e.g. COCO): they are reported with stream null
        promoted = promoted_model(cfg.resolve(cfg.model.registry)) if cfg.model.watch_registry else None
        det = load_detector(cfg, taxonomy, model or (promoted[1] if promoted else None), check_classes=model is None)
        foreign = model is not None and any(n not in taxonomy for n in det.names)
        decider = None
        if not detector_only and not foreign:
            classifier = load_classifier(cfg, taxonomy, classifier_path(cfg))
            decider = StillDecider(cfg, taxonomy, classifier)
    except ModelError as exc:
        raise fail(str(exc)) from None
    if foreign and not detector_only:
        typer.echo(f"detect: {det.path} has classes outside the taxonomy: detections only (no decisions)", err=True)
    version = decider.classifier_version if decider is not None else None
    images = failed = warned = 0
    for result in detect_paths(paths, det, taxonomy, decider, version):
        images += 1
        failed += result.error is not None
        warned += bool(result.warnings)
        typer.echo(result.to_json() if as_json else _detect_line(result))
    typer.echo(f"detect: {images} images, {images - failed} read, {failed} failed, {warned} with warnings",
               err=True)
    if failed or images == 0:
        raise typer.Exit(1)


def _detect_line(result: ImageResult) -> str:
    if result.error:
        return f"{result.image}: error: {result.error}"
    parts = []
    for d in result.detections:
        text = f"{d.class_name} {d.confidence:.2f}"
        if d.decision is not None:
            text += f" → {d.decision.stream}" + (f" ({d.decision.hazard})" if d.decision.hazard else "")
            text += "" if d.decision.reason == "ok" else f" [{d.decision.reason}]"
        parts.append(text)
    warn = "".join(f" (warning: {w})" for w in result.warnings)
    return f"{result.image}: {', '.join(parts) or 'nothing'}{warn}"


@app.command("run")
def run(
    config: ConfigOpt = None,
    source: Annotated[str | None, typer.Option(help="sim | video path | image folder | rtsp://… | usb:N")] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    headless: Annotated[bool, typer.Option(help="The pipeline without the web server.")] = False,
    fast: Annotated[bool, typer.Option(help="Do not pace files/simulator to real time (no frame drops).")] = False,
    host: Annotated[str | None, typer.Option(help="Bind address of the web app.")] = None,
    port: Annotated[int | None, typer.Option(help="Port of the web app.")] = None,
    model: Annotated[Path | None, typer.Option(help="ONNX model instead of the config's.")] = None,
    frames: Annotated[int | None, typer.Option(help="Stop after this many frames.")] = None,
    store: Annotated[str | None, typer.Option("--store", help="Database URL of this run (sqlite:///path or "
                                              "postgresql+psycopg://…). Default: the config's store.url for the "
                                              "live station; a scored simulator run (--headless on the "
                                              "simulator) its own store under store.runs_dir/<run id>/.")] = None,
) -> None:
    """Run the station. With the simulator and --headless --duration, end with a JSON scorecard (a scorecard run,
    kept apart from the live station's data)."""
    from station.runs import plan_run

    cfg = _load(config)
    cfg = _apply_overrides(cfg, source, fast, host, port, model, frames)
    scored = cfg.source.kind == "simulator" and headless
    try:
        plan = plan_run(cfg, "scorecard" if scored else "live", store)
    except ValueError as exc:  # a --store that is not a database URL
        raise fail(f"--store: {exc}") from None
    cfg = plan.config
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # our store logs the schema state in one line
    from sqlalchemy.exc import SQLAlchemyError

    from station.capture import SourceError
    from station.detect import ModelError
    from station.runtime import build_station, scorecard
    from station.store import StoreError

    try:
        # only a headless simulator run is scored; a served one keeps no per-item results (bounded memory)
        built = build_station(cfg, keep_results=scored, run_kind=plan.kind, run_id=plan.run_id)
    except (SourceError, ModelError, ConfigError, OSError, StoreError) as exc:
        raise fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise fail(f"store.url: cannot open the store: {str(exc).splitlines()[0]}; check the database server "
                   "and the URL (`sortloop config check` tries it)") from None
    typer.echo(f"run {plan.run_id} ({plan.kind}), store {_shown_url(cfg.store.url)}", err=True)
    if headless:
        _run_headless(built, duration)
    else:
        _serve(built, cfg, duration)
    if built.source_is_sim and headless:
        card = scorecard(built, built.station.last_frame.timestamp if built.station.last_frame else 0.0)
        typer.echo(card.to_json())


def _shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _apply_overrides(cfg: StationConfig, source: str | None, fast: bool, host: str | None, port: int | None,
                     model: Path | None, frames: int | None) -> StationConfig:
    from station.capture import parse_source

    data = cfg.model_dump()
    if source is not None:
        kind, uri = parse_source(source)
        data["source"].update(kind=kind, uri=uri)
    if fast:
        data["source"]["realtime"] = False
    if frames is not None:
        data["source"]["max_frames"] = frames
    if host is not None:
        data["api"]["host"] = host
    if port is not None:
        data["api"]["port"] = port
    if model is not None:
        data["model"].update(path=str(model.resolve()), watch_registry=False)
    return StationConfig.model_validate(data)


def _run_headless(built: Built, duration: float | None) -> None:
    st = built.station
    st.start()
    if built.watcher:
        built.watcher.start()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM as Ctrl-C: the same clean stop
    try:
        st.wait(duration)
    except KeyboardInterrupt:
        pass
    finally:
        st.stop()
        if built.watcher:
            built.watcher.stop()
        log.info("station %s stopped", st.cfg.station_id)


def _serve(built: Built, cfg: StationConfig, duration: float | None) -> None:
    import threading

    import uvicorn

    from station.api import create_app
    from station.runtime import wait_for_port_free

    st = built.station
    try:
        wait_for_port_free(cfg.api.host, cfg.api.port)
    except OSError as exc:
        raise fail(str(exc)) from None
    assert st.live is not None
    live = st.live
    web = create_app(st.store, st, live, st.metrics, cfg)
    _mount_console(web, st, cfg)
    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            live.close()  # end open MJPEG responses first, or uvicorn waits on them
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

    server = _Server(uvicorn.Config(web, host=cfg.api.host, port=cfg.api.port, log_level="warning",
                                    timeout_graceful_shutdown=3))
    st.start()
    if built.watcher:
        built.watcher.start()
    url = f"http://{cfg.api.host}:{cfg.api.port}/"
    typer.echo(f"sortloop station running — live view: {url}  (API docs: {url}docs; Ctrl-C stops)")
    def shutdown() -> None:
        live.close()  # open MJPEG responses end, so uvicorn can stop
        server.should_exit = True

    if duration is not None:
        threading.Timer(duration, shutdown).start()
    # uvicorn stops on SIGINT/SIGTERM, then raises the signal again once its shutdown is done: both must end in
    # the station's own stop below (workers joined, spool kept), not in an exit with inference threads running
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        live.close()
        st.stop()
        if built.watcher:
            built.watcher.stop()
        log.info("station %s stopped", cfg.station_id)


def _mount_console(web: object, station: object, cfg: StationConfig) -> None:
    """The operator console lives in the ``ui`` package; mount it when installed."""
    hook = CONSOLE_HOOKS[0] if CONSOLE_HOOKS else None
    if hook is not None:
        hook(web, station, cfg)


# the ui plugin registers its mount function here, so the station never imports ui
CONSOLE_HOOKS: list[Callable[[Any, Any, StationConfig], None]] = []

PLUGIN_GROUP = "sortloop.commands"
"""Entry-point group of the parts that add commands: each names a ``register(app: typer.Typer) -> None``."""

F = TypeVar("F", bound=Callable[..., Any])


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """The modules of ``modules`` that are not installed (found, not imported)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def extra_missing(extra: str, modules: tuple[str, ...]) -> str | None:
    """Why the ``extra`` is not usable here (a message naming the install command), or None when it is."""
    missing = missing_modules(modules)
    if not missing:
        return None
    return f"needs the {extra} extra: pip install 'sortloop[{extra}]' (not installed: {', '.join(missing)})"


def needs_extra(extra: str, modules: tuple[str, ...]) -> Callable[[F], F]:
    """A command decorator: the command runs only when ``modules`` are installed, else it says which extra."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            why = extra_missing(extra, modules)
            if why is not None:
                raise fail(why)
            return fn(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return wrap


def load_plugins(target: typer.Typer, found: list[EntryPoint] | None = None) -> list[str]:
    """Let every installed part register its commands on ``target``; returns their names."""
    names = []
    for ep in sorted(entry_points(group=PLUGIN_GROUP) if found is None else found, key=lambda e: e.name):
        register = ep.load()
        register(target)
        names.append(ep.name)
    return names


def main() -> None:
    """The ``sortloop`` console script (also ``python -m station``)."""
    load_plugins(app)
    app()
