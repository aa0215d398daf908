"""Command-line interface. Each command lives in its own module and is a thin layer over a library
function; user mistakes (NcbenchError) are rendered once here, with exit code 2."""

from __future__ import annotations

import sys

from ncbench.cli.app import app



def _register_commands() -> None:
    """Import every `ncbench/cli/cmd_*.py`: importing one registers its command(s) on `app`.

    Command modules keep heavy imports (torch, textual, matplotlib) inside the command bodies so
    `ncbench --help` stays fast and views never pull in training code."""
    import importlib
    import pkgutil

    # `ncbench --help` lists commands in registration order: the pipeline's order first.
    order = ["cmd_run", "cmd_rm", "cmd_status", "cmd_sync", "cmd_doctor", "cmd_sql", "cmd_report", "cmd_tui", "cmd_ufm", "cmd_models"]
    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("cmd_")]
    for name in sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n)):
        importlib.import_module(f"{__name__}.{name}")


_register_commands()


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console

    from ncbench.errors import NcbenchError

    try:
        app(args=argv, standalone_mode=True)
    except NcbenchError as exc:
        from rich.markup import escape

        # soft_wrap: one line per message, not wrapped at 80 columns; escape: "[defaults]" etc.
        # in messages are text, not rich markup.
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(exc))}",
                                                   highlight=False)
        sys.exit(exc.exit_code)
