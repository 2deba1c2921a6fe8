"""The runtime's command line: ``sortloop run``, ``detect``, ``sim render``, ``config check|schema``.

Training commands (``train``, ``export``, ``eval``, ``promote`` …) and console commands are added by
``training.cli`` and ``ui.cli`` when those packages are installed.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from station.cli_access import tokens_app
from station.config import ConfigError, StationConfig, load_config

if TYPE_CHECKING:
    from station.runtime import Built

app = typer.Typer(add_completion=False, no_args_is_help=True, help="sortloop: a sorting and triage station.")
config_app = typer.Typer(no_args_is_help=True, help="Check and describe the station configuration.")
sim_app = typer.Typer(no_args_is_help=True, help="The conveyor simulator.")
app.add_typer(config_app, name="config")
app.add_typer(sim_app, name="sim")
app.add_typer(tokens_app, name="tokens")

DEFAULT_CONFIG = Path("configs/station.yaml")
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Station config YAML.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _load(path: Path | None) -> StationConfig:
    try:
        if path is None and DEFAULT_CONFIG.is_file():
            path = DEFAULT_CONFIG
        return load_config(path)
    except ConfigError as exc:
        raise fail(str(exc)) from None


@config_app.command("check")
def config_check(file: Path) -> None:
    """Validate a config file; errors name the YAML path and the fix."""
    _load(file)
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
               "# JSON schema. Paths are relative to the repository root.\n" + commented_yaml(StationConfig()))


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
) -> None:
    """Detect items in images with the station's detector."""
    from station.detect import ModelError, detect_paths
    from station.runtime import load_detector
    from station.taxonomy import load_taxonomy

    cfg = _load(config)
    taxonomy = load_taxonomy(cfg.resolve(cfg.taxonomy))
    try:
        # an explicitly named model may carry other classes (e.g. COCO): they are reported with stream null
        det = load_detector(cfg, taxonomy, model, check_classes=model is None)
    except ModelError as exc:
        raise fail(str(exc)) from None
    for result in detect_paths(paths, det, taxonomy):
        if as_json:
            typer.echo(result.to_json())
        elif result.error:
            typer.echo(f"{result.image}: error: {result.error}")
        else:
            found = ", ".join(f"{d.class_name} {d.confidence:.2f}" for d in result.detections) or "nothing"
            typer.echo(f"{result.image}: {found}")


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
) -> None:
    """Run the station. With the simulator and --headless --duration, end with a JSON scorecard."""
    cfg = _load(config)
    cfg = _apply_overrides(cfg, source, fast, host, port, model, frames)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # our store logs the schema state in one line
    from station.capture import SourceError
    from station.detect import ModelError
    from station.runtime import build_station, scorecard

    try:
        built = build_station(cfg, keep_results=cfg.source.kind == "simulator")
    except (SourceError, ModelError, ConfigError, OSError) as exc:
        raise fail(str(exc)) from None
    if headless:
        _run_headless(built, duration)
    else:
        _serve(built, cfg, duration)
    if built.source_is_sim and headless:
        card = scorecard(built, built.station.last_frame.timestamp if built.station.last_frame else 0.0)
        typer.echo(card.to_json())


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
    signal.signal(signal.SIGTERM, lambda *_: st.stop())
    try:
        st.wait(duration)
    except KeyboardInterrupt:
        st.stop()
    if built.watcher:
        built.watcher.stop()


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
    server.run()
    live.close()
    st.stop()
    if built.watcher:
        built.watcher.stop()


def _mount_console(web: object, station: object, cfg: StationConfig) -> None:
    """The operator console lives in the ``ui`` package; mount it when installed."""
    hook = CONSOLE_HOOKS[0] if CONSOLE_HOOKS else None
    if hook is not None:
        hook(web, station, cfg)


# ui.cli registers its mount function here, so the station never imports ui
CONSOLE_HOOKS: list[Callable[[Any, Any, StationConfig], None]] = []


def main() -> None:
    """Station-only entry point (``python -m station``)."""
    app()
