"""The TUI's views, one module each: runs, run detail, compare, and the dialogs.

Each view is a `ncbench.tui.ports.DbScreen` (the app calls its `read`/`apply`/`runs_changed`)
and reaches the app only through `ncbench.tui.ports.ScreenHost`.
"""

from ncbench.tui.screens.compare import CompareScreen
from ncbench.tui.screens.detail import RunDetailScreen
from ncbench.tui.screens.dialogs import ConfirmScreen, HelpScreen
from ncbench.tui.screens.runs import RunsScreen

__all__ = ["RunsScreen", "RunDetailScreen", "CompareScreen", "HelpScreen", "ConfirmScreen"]
