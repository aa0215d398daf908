"""The Typer application object shared by the command modules of ncbench.cli."""

import typer

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
