"""Snapshots (pytest-textual-snapshot) of the three TUI views at 80×24 and 160×48.

Deterministic: the database is the fixed one of tests/_tui_data.py, the clock is frozen
(`now=NOW`, so elapsed and ETA do not move), and the app polls only when the test asks.
Regenerate after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`
and look at the report it writes before committing the SVGs in tests/__snapshots__/.
"""

from __future__ import annotations

import pytest

from tests._tui_data import NOW, make_tui_db
from tests.test_tui import fresh_poll, wait_for

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]


@pytest.fixture
def tui_db(tmp_path):
    db = tmp_path / "ncbench.duckdb"
    make_tui_db(db)
    return db


def make_app(db):
    from ncbench.tui.app import NcbenchApp

    # A poll interval longer than any test: only the polls the test starts happen.
    return NcbenchApp(db, now=lambda: NOW, poll_interval=3600)


@pytest.mark.parametrize("size", SIZES)
def test_runs_view(snap_compare, tui_db, size):
    async def run_before(pilot):
        await fresh_poll(pilot)

    assert snap_compare(make_app(tui_db), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_run_detail_view(snap_compare, tui_db, size):
    """The running run: NC1 (log, train and test), NC2–NC4, accuracies, loss, lr, config."""
    from ncbench.tui.screens import RunDetailScreen

    async def run_before(pilot):
        await fresh_poll(pilot)
        pilot.app.push_screen(RunDetailScreen("demo-fl-s0"))
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen))
        await fresh_poll(pilot)
        await wait_for(pilot, lambda: pilot.app.screen.series.last_epoch == 4)

    assert snap_compare(make_app(tui_db), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_compare_view(snap_compare, tui_db, size):
    """Experiment demo: ce, fl, mse curves (mean over seeds) and the report's tables."""
    from ncbench.tui.screens import CompareScreen

    async def run_before(pilot):
        await fresh_poll(pilot)
        pilot.app.push_screen(CompareScreen("demo"))
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
        await fresh_poll(pilot)
        await wait_for(pilot, lambda: pilot.app.screen.loads >= 1 and not pilot.app.screen._loading)

    assert snap_compare(make_app(tui_db), terminal_size=size, run_before=run_before)
