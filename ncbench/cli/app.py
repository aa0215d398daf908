"""The Typer application object shared by the command modules of ncbench.cli."""

import typer
from typer.core import TyperOption

_display_type_rich = TyperOption.display_type_rich


def _flag_display_type(self, ctx):
    """No value placeholder (Typer's "<bool>") for a flag: `--dry-run`, not `--dry-run <bool>`."""
    return None if self.is_flag else _display_type_rich(self, ctx)


# One place for every command's --help (and Typer's own --help option): flags take no value.
TyperOption.display_type_rich = _flag_display_type

app = typer.Typer(
    name="ncbench",
    help="Experiment manager for Neural Collapse studies of training losses.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _print_version(value: bool) -> None:
    if value:
        from ncbench import __version__

        typer.echo(f"ncbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Experiment manager for Neural Collapse studies of training losses."""
