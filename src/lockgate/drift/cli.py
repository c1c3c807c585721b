"""`lockgate drift`: compare a route's recent traffic with a reference, print a table, write reports."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import NoReturn

import click

from lockgate.drift.spec import FORMS, WindowError, WindowSpec, parse_window

EXIT_NO_DRIFT, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_ERROR)


@click.command("drift")
@click.option("--route", required=True, help="The route whose traffic is checked.")
@click.option("--reference", "reference_text", default=None,
              help=f"Reference window: {FORMS}. Default: the route's `drift.reference` in lockgate.yaml.")
@click.option("--current", "current_text", default=None,
              help="Current window: last:DURATION or since:TIME[,until:TIME]. Default: last:1h, or the "
                   "route's `drift.window_s`.")
@click.option("--out", "out_dir", default=None, type=click.Path(),
              help="Folder for the JSON and HTML reports (default ./.lockgate/drift/).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="False-alarm rate of the whole report, shared by its features (default 0.05).")
@click.option("--min-samples", type=click.IntRange(min=2), default=None,
              help="Fewer values than this in a window: the feature is not judged (default 30).")
@click.option("--effect", type=click.Choice(["distance", "psi"]), default="distance", show_default=True,
              help="Effect size judged against its threshold: Wasserstein / Jensen-Shannon distance, or PSI.")
@click.option("--max-traces", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="At most this many traces per window (the newest).")
@click.option("--no-topic", is_flag=True, help="Skip the topic feature (it embeds prompts with MiniLM).")
@click.pass_context
def drift_command(ctx: click.Context, route: str, reference_text: str | None, current_text: str | None,
                  out_dir: str | None, alpha: float | None, min_samples: int | None, effect: str,
                  max_traces: int, no_topic: bool) -> None:
    """Compare a route's current traffic with a reference window, feature by feature.

    Features: prompt and output length, language, topic, guard scores, guard action, refusal rate and
    confidence, as far as the traces record them. Prints one row per feature and writes a JSON and an
    HTML report. Exit 0: no drift; 1: drift; 2: error, or no feature had enough data to judge.

    \b
    Windows:
      suite:PATH                the inputs of an evaluation suite (reference only)
      last:DURATION             the last 90s / 15m / 1h / 7d / 2w of the route's traffic
      since:TIME[,until:TIME]   a period (ISO 8601; no zone means UTC; until defaults to now)
    Example:
      lockgate drift --route support-bot --reference suite:evals/support.yaml --current last:1h
    """
    from lockgate.config import ConfigError
    from lockgate.drift.analysis import compare
    from lockgate.drift.report import summary_text, write_reports
    from lockgate.drift.stats import DriftSettings, Verdict
    from lockgate.drift.windows import load_window
    from lockgate.gateway.runtime import load_settings_config, open_store

    settings = ctx.obj["settings"]
    try:
        config = load_settings_config(settings)
    except ConfigError as exc:
        _fail(str(exc))
    if route not in config.routes:
        _fail(f"no route {route!r} in the configuration (routes: {', '.join(sorted(config.routes))})")
    configured = config.routes[route].drift
    from_config = reference_text is None
    if reference_text is None:
        if configured is None:
            _fail(f"give --reference ({FORMS}); route {route!r} has no `drift.reference` in the configuration")
        reference_text = configured.reference
    # A suite path in lockgate.yaml is relative to that file; on the command line, to where you are.
    base_dir = settings.config_path.parent if from_config and settings.config_path else Path.cwd()
    try:
        reference_spec = parse_window(reference_text, base_dir=base_dir)
        current_spec = (parse_window(current_text, allow_suite=False) if current_text
                        else WindowSpec(f"last:{configured.window_s:g}s", last_s=configured.window_s) if configured
                        else parse_window("last:1h"))
        drift_settings = DriftSettings(
            alpha=alpha if alpha is not None else (configured.alpha if configured else 0.05),
            min_samples=min_samples if min_samples is not None else (configured.min_samples if configured else 30),
            effect="psi" if effect == "psi" else "distance")
    except (WindowError, ValueError) as exc:
        _fail(str(exc))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings)
    now = time.time()
    try:
        reference = load_window(reference_spec, route=route, store=store, now=now, max_traces=max_traces)
        current = load_window(current_spec, route=route, store=store, now=now, max_traces=max_traces)
        report = compare(route, reference, current, drift_settings, topic=not no_topic)
    except WindowError as exc:
        _fail(str(exc))
    paths = write_reports(report, out_dir or os.path.join(".lockgate", "drift"))
    click.echo(summary_text(report))
    click.echo("reports: " + ", ".join(str(p) for p in paths.values()))
    if report.verdict is Verdict.INSUFFICIENT:
        click.echo(f"error: no feature has {drift_settings.min_samples} values in both windows "
                   f"(reference {len(reference)}, current {len(current)} requests); widen the windows "
                   "or lower --min-samples", err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_DRIFT if report.verdict is Verdict.DRIFT else EXIT_NO_DRIFT)
