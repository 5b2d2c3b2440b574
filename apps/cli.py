"""The `threefold` command line: one root group assembling each package's commands."""

from __future__ import annotations

import importlib
import logging
import sys

import click

# name -> (module, attribute); imported only when that command runs, so `--help` stays fast.
COMMAND_GROUPS: dict[str, tuple[str, str, str]] = {
    "classifier": ("threefold.core.cli", "classifier", "Train, evaluate and run text classifiers."),
    "models": ("threefold.core.registry_cli", "models", "Model versions: list, promote, rollback."),
    "stream": ("threefold.streaming.cli", "stream", "Kafka helpers: replay files into topics."),
    "qa": ("threefold.apps.qa.cli", "qa", "Customer-service FAQ bot: build, evaluate, ask."),
    "alerts": ("threefold.apps.alerts.cli", "alerts", "Financial-news sentiment alerting."),
    "recs": ("threefold.apps.recs.cli", "recs", "Text-based recommendations: build, evaluate."),
    "demo": ("threefold.apps.demo.cli", "demo", "Run the whole suite on embedded services."),
}
SERVE_COMMANDS: dict[str, tuple[str, str, str]] = {
    "qa": ("threefold.apps.qa.cli", "serve_command", "Serve the FAQ bot API and chat widget."),
    "recs": ("threefold.apps.recs.cli", "serve_command", "Serve the recommendation API."),
    "dashboard": ("threefold.apps.alerts.cli", "serve_command", "Serve the alerts dashboard."),
}

RETRAIN_COMMANDS: dict[str, tuple[str, str, str]] = {
    "qa": ("threefold.apps.qa.cli", "retrain_command", "Rebuild the FAQ bot; gate; promote."),
    "alerts": ("threefold.apps.alerts.cli", "retrain_command", "Retrain with corrections; gate."),
    "recs": ("threefold.apps.recs.cli", "retrain_command", "Retrain the ranker on new events."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module_name, attribute, _ = self.lazy[name]
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                raise click.ClickException(f"command {name!r} is not available: {exc}") from exc
            command = getattr(module, attribute)
            command.name = name
            return command
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, _, help_text) in self.lazy.items()]
        for name in super().list_commands(ctx):
            command = super().get_command(ctx, name)
            if command is not None and name not in self.lazy:
                rows.append((name, command.get_short_help_str()))
        rows.sort()
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy=COMMAND_GROUPS)
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
def cli(verbose: int) -> None:
    """threefold: one shared AI core, three apps (FAQ bot, news alerts, recommendations)."""
    from threefold.core.base_model import configure_offline

    configure_offline()
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@cli.group(cls=LazyGroup, lazy=SERVE_COMMANDS)
def serve() -> None:
    """Run one app's HTTP server (development server; use gunicorn in production)."""


@cli.group(cls=LazyGroup, lazy=RETRAIN_COMMANDS)
def retrain() -> None:
    """Build a candidate from the collected labels, gate it against the live version, promote."""


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="threefold")
