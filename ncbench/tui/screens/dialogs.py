"""The TUI's dialogs: the key help and a yes/no question.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

__all__ = ["HelpScreen", "ConfirmScreen", "HELP", "HELP_WIDTH"]


# Every line fits an 80-column terminal (HELP_WIDTH, with the box's border, padding and
# scrollbar): the help is never cut on the right.
HELP_WIDTH = 74
HELP = """\
[b]Runs view[/b]
  ↑ ↓ PgUp PgDn   move                  Enter   run detail
  /               filter                Esc     clear filter
  s / S           next sort / reverse (or click a column header)
  c               compare the experiment of the selected run
  R               retry the selected failed / interrupted run (starts
                  the queue)
  x               cancel the selected running run (SIGTERM to its worker)

[b]Filter syntax[/b]  terms separated by spaces, all must hold
  loss:ce,fl  status:running  exp:demo  width:2  seed:0
  dataset:digits  model:mlp  !status:done (negation)
  plain words match any text column

[b]Run detail[/b]
  Tab             next chart / config   l       log scale of the chart
  c               compare view          R / x   retry / cancel this run
  Esc             back

[b]Compare view[/b]
  [ / ]           previous / next experiment
  w               next configuration (width, epochs …) of the curves
  u               tables: include unfinished runs
  l               log scale             Esc     back

[b]Everywhere[/b]
  r               start / stop the queue (ncbench run; stop = Ctrl-C)
  ?               this help             q       quit (stops its queue)
"""


class HelpScreen(ModalScreen[None]):
    """Key bindings of every view."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(HELP, id="help-text")

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question (y / n, Enter = yes, Esc = no)."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(Text(self.question), id="confirm-text")  # plain: labels, ids
            yield Static("[b]y[/b] yes    [b]n[/b] no", id="confirm-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
