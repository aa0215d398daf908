"""The docs cannot go stale: README.md and docs/*.md are checked against the code.

Links and repository paths resolve; the schema page names every column and metric; the
experiments.toml page lists every key with its real default; every command is documented and
every option a documented command line uses exists; Python examples import real names; the
dotted names `ncbench.x.y` the pages cite exist; the run-directory file names, event types and
worker exit codes of docs/internals.md are the code's; the quoted parameter counts are exact;
docs/architecture.md's module list is current. Code is read with `ast` where that suffices, and
imported lazily otherwise (other modules are being moved around).
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def page_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def prose(text: str) -> str:
    """The text without its fenced code blocks."""
    return FENCE.sub("", text)


def read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces → hyphens."""
    text = re.sub(r"[`*_\[\]]|\]\([^)]*\)", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6} (.+)", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


# -- links and paths ---------------------------------------------------------------------------


def test_readme_is_short():
    assert len(read("README.md").splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_point_to_existing_files_and_anchors(page):
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {page_id(dest)}")
    assert not bad, f"{page_id(page)}: " + "; ".join(bad)


REPO_PATH = re.compile(r"(?<![\w./<>-])((?:ncbench|tests|benchmarks|scripts|docs)/[\w./-]*?"
                       r"\.(?:py|md|sh|toml|png|pdf|json|tcss))\b")


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_repository_paths_mentioned_exist(page):
    missing = sorted({p for p in REPO_PATH.findall(page.read_text(encoding="utf-8"))
                      if not (ROOT / p).exists()})
    assert not missing, f"{page_id(page)} mentions files that do not exist: {missing}"


def test_docs_pages_cited_by_the_code_exist():
    """Docstrings, comments and messages that send the reader to docs/*.md name real pages."""
    sources = [ROOT / "experiments.toml", ROOT / ".ci" / "run"]
    for folder in ("ncbench", "tests", "scripts", "benchmarks"):
        sources += sorted((ROOT / folder).rglob("*.py"))
    missing = {f"{page_id(src)}: {ref}"
               for src in sources if src.is_file()
               for ref in re.findall(r"(?<![\w/.-])(docs/[\w./-]+\.md)\b", src.read_text(encoding="utf-8"))
               if not (ROOT / ref).exists()}
    assert not missing, sorted(missing)


# -- names in the code -------------------------------------------------------------------------


def module_file(name: str) -> Path | None:
    """The file of module `ncbench.a.b` (package `__init__.py` first), or None."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


@cache
def defined_names(path: Path) -> frozenset[str] | None:
    """Top-level names a module defines or imports; None when it cannot be told statically
    (a module `__getattr__` or a star import)."""
    names: set[str] = set()

    def walk(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    if alias.name == "*":
                        raise LookupError
                    names.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                walk(node.body)
                walk(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    walk(h.body)
                walk(getattr(node, "finalbody", []))

    try:
        walk(ast.parse(path.read_text(encoding="utf-8")).body)
    except LookupError:
        return None
    return None if "__getattr__" in names else frozenset(names)


def resolve(dotted: str) -> str | None:
    """None when `ncbench.mod[.attr…]` names a module and, if given, a name defined in it."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        path = module_file(".".join(parts[:i]))
        if path is None:
            continue
        if i == len(parts):
            return None
        names = defined_names(path)
        if names is None or parts[i] in names or module_file(".".join(parts[: i + 1])):
            return None
        return f"{dotted}: {'.'.join(parts[:i])} defines no {parts[i]!r}"
    return f"{dotted}: no such module"


NOT_MODULES = {"ncbench.duckdb"}  # the database's file name


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_dotted_names_exist(page):
    text = page.read_text(encoding="utf-8")
    found = set(re.findall(r"(?<![\w./-])(ncbench(?:\.[A-Za-z_]\w*)+)", text)) - NOT_MODULES
    errors = sorted(filter(None, map(resolve, found)))
    assert not errors, f"{page_id(page)}: " + "; ".join(errors)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_python_examples_import_real_names(page):
    errors = []
    for lang, code in FENCE.findall(page.read_text(encoding="utf-8")):
        if lang != "python":
            continue
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ncbench"):
                errors += filter(None, (resolve(f"{node.module}.{a.name}") for a in node.names))
            elif isinstance(node, ast.Import):
                errors += filter(None, (resolve(a.name) for a in node.names
                                        if a.name.startswith("ncbench")))
    assert not errors, f"{page_id(page)}: " + "; ".join(errors)


# -- the command line --------------------------------------------------------------------------


@cache
def cli_commands() -> dict[str, set[str]]:
    """Command name → its option strings (with --help), from the Typer app."""
    import typer.main

    import ncbench.cli  # noqa: F401  (registers the commands)
    from ncbench.cli.app import app

    group = typer.main.get_command(app)
    return {name: {"--help", *(o for p in cmd.params if p.param_type_name == "option"
                                 for o in [*p.opts, *p.secondary_opts])}
            for name, cmd in group.commands.items()}


def documented_command_lines(text: str) -> list[str]:
    """`ncbench …` command lines: lines of bash/sh blocks, `$ ` lines of other blocks, and
    inline code spans that start with `ncbench `."""
    lines = []
    for lang, code in FENCE.findall(text):
        for line in code.splitlines():
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            elif lang not in ("bash", "sh"):
                continue
            lines += [m for m in re.findall(r"(?:^|&& |\.venv/bin/)(ncbench .*)", line)]
    lines += re.findall(r"`(ncbench [^`]*)`", prose(text))
    return lines


def test_every_command_is_documented():
    text = "\n".join(p.read_text(encoding="utf-8") for p in PAGES)
    missing = [c for c in cli_commands() if not re.search(rf"\bncbench {c}\b", text)]
    assert not missing, f"commands not mentioned in README.md or docs/: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_documented_command_lines_use_real_commands_and_options(page):
    commands = cli_commands()
    errors = []
    for line in documented_command_lines(page.read_text(encoding="utf-8")):
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split()
        if len(words) < 2 or not re.fullmatch(r"[a-z]+", words[1]):
            continue
        name = words[1]
        if name not in commands:
            errors.append(f"{line!r}: no command {name!r}")
            continue
        for w in words[2:]:
            if w.startswith("--") and w.split("=")[0] not in commands[name]:
                errors.append(f"{line!r}: ncbench {name} has no option {w.split('=')[0]}")
    assert not errors, f"{page_id(page)}: " + "; ".join(errors)


# -- the database ------------------------------------------------------------------------------


def backticked(text: str) -> set[str]:
    """The inline code spans of a page (outside code blocks)."""
    return set(re.findall(r"`([^`\n]+)`", prose(text)))


@cache
def db_columns() -> dict[str, list[tuple[str, str]]]:
    """(column, type) of the tables and views, from the real DDL on an in-memory database."""
    import duckdb

    from ncbench import schema

    con = duckdb.connect()
    schema.apply(con)
    return {rel: [(r[0], r[1]) for r in con.execute(f"DESCRIBE {rel}").fetchall()]
            for rel in ("runs", "metrics", "meta", "epochs", "results")}


def test_schema_page_names_every_column_and_metric():
    from ncbench import schema

    text = read("docs/schema.md")
    names = backticked(text)
    for rel, cols in db_columns().items():
        missing = [c for c, _ in cols if c not in names]
        assert not missing, f"docs/schema.md lacks columns of {rel}: {missing}"
    missing = [m for m in schema.EPOCH_METRICS if m not in names]
    assert not missing, f"docs/schema.md lacks metrics: {missing}"
    stated = re.findall(r"schema version (\d+)", text)
    assert stated and {int(v) for v in stated} == {schema.SCHEMA_VERSION}


def test_schema_page_runs_table_types_and_statuses():
    text = read("docs/schema.md")
    table = text[text.index("**`runs`**"):text.index("**`metrics`**")]
    real = dict(db_columns()["runs"])
    documented = {}
    for row in re.findall(r"^\| (`.+?) \| (.*?) \|", table, flags=re.M):
        cols = re.findall(r"`(\w+)`", row[0])
        types = [t.strip() for t in row[1].split(",") if t.strip()]
        for i, col in enumerate(cols):
            documented[col] = types[i] if len(types) == len(cols) else (types or [""])[0]
    assert sorted(documented) == sorted(real), "the runs table lists every column, once"
    wrong = {c: (t, real[c]) for c, t in documented.items() if t and t != real[c]}
    assert not wrong, f"documented vs real types: {wrong}"
    status_row = next(line for line in table.splitlines() if line.startswith("| `status`"))
    try:
        from ncbench.lifecycle import RUN_STATUSES
    except ImportError:
        from ncbench.schema import RUN_STATUSES
    assert re.findall(r"`(\w+)`", status_row)[1:] == list(RUN_STATUSES)


# -- experiments.toml --------------------------------------------------------------------------


def keys_table() -> list[tuple[str, str]]:
    """(key, default cell) of each row of docs/experiments-toml.md's key table."""
    text = read("docs/experiments-toml.md")
    section = text[text.index("## Keys"):]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    return re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]+?) \|", section, flags=re.M)


def test_experiments_toml_page_lists_every_key_in_order():
    from ncbench.config import KEYS

    assert [k for k, _ in keys_table()] == list(KEYS)


def test_experiments_toml_page_defaults_are_the_real_ones(tmp_path):
    """Each default that is a plain value is what a run gets when the key is left out; each
    `required` key is an error when left out."""
    from ncbench.config import expand, load_config
    from ncbench.errors import ConfigError

    minimal = ['[experiments.x]', 'dataset = "digits"', 'model = "mlp"', 'loss = "ce"', 'epochs = 1']
    cfg = tmp_path / "experiments.toml"
    cfg.write_text("\n".join(minimal) + "\n")
    spec = expand(load_config(cfg))[0]
    checked = []
    for key, cell in keys_table():
        cell = cell.strip().strip("`")
        if cell == "required":
            bad = tmp_path / f"no-{key}.toml"
            bad.write_text("\n".join(line for line in minimal if not line.startswith(f"{key} =")))
            with pytest.raises(ConfigError, match=key):
                load_config(bad)
            checked.append(key)
            continue
        cell = re.sub(r"(\d+)/(\d+)", lambda m: repr(int(m[1]) / int(m[2])), cell)  # [3/7, 5/7]
        try:
            documented = tomllib.loads(f"v = {cell}")["v"]
        except tomllib.TOMLDecodeError:
            continue  # prose: "all", "$NCBENCH_DATA or ./data"
        real = getattr(spec, key)
        real = list(real) if isinstance(real, tuple) else real
        if isinstance(documented, bool) or not isinstance(documented, (int, float, list)):
            assert real == documented, f"{key}: documented {cell}, real {real!r}"
        else:
            assert real == pytest.approx(documented), f"{key}: documented {cell}, real {real!r}"
        checked.append(key)
    assert len(checked) >= 20, checked


# -- internals.md ------------------------------------------------------------------------------


def string_constants(path: Path) -> dict[str, str]:
    """UPPER_CASE = "string" assignments at the top level of a module."""
    out = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            for t in node.targets:
                if isinstance(t, ast.Name) and t.id.isupper():
                    out[t.id] = node.value.value
    return out


def test_internals_page_names_every_file_of_the_layout():
    text = read("docs/internals.md")
    names = {}
    for module in ("ncbench/rundir.py", "ncbench/paths.py"):
        if (ROOT / module).exists():
            names.update(string_constants(ROOT / module))
    if not names:
        pytest.skip("no ncbench/rundir.py or ncbench/paths.py")
    missing = {k: v for k, v in names.items() if v not in text}
    assert not missing, f"docs/internals.md does not name: {missing}"


def test_internals_page_event_types_are_the_ones_written():
    written = set()
    for module in ("ncbench/events.py", "ncbench/worker.py", "ncbench/lifecycle.py"):
        if not (ROOT / module).exists():
            continue
        for node in ast.walk(ast.parse(read(module))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "append" and node.args
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                    and len(node.args) == 1 and node.keywords):
                written.add(node.args[0].value)
    assert {"start", "eval", "end"} <= written
    documented = set(re.findall(r'"type": "(\w+)"', read("docs/internals.md")))
    assert documented == written


def test_internals_page_worker_exit_codes():
    from ncbench.worker import EXIT_CODES as codes  # torch is imported inside main() only

    line = next(line for line in read("docs/internals.md").splitlines()
                if line.startswith("Exit codes:"))
    assert {name: int(code) for code, name in re.findall(r"(\d+) (\w+)", line)} == codes


# -- models-data.md ----------------------------------------------------------------------------


def test_models_page_parameter_counts_are_exact():
    text = read("docs/models-data.md")
    blocks = re.findall(r"<!-- parameter counts: K = (\d+), input shape ([\d,]+) -->\n"
                        r"\| model \| width \| parameters \| feature dim \|\n\|[-:|]+\|\n"
                        r"((?:\|.*\|\n)+)", text)
    assert len(blocks) >= 3
    import torch

    from ncbench.models import count_parameters, make_model

    for k, shape, rows in blocks:
        for row in rows.strip().splitlines():
            name, width, params, dim = (c.strip() for c in row.strip("|").split("|"))
            with torch.device("meta"):
                m = make_model(name, int(k), float(width),
                               input_shape=tuple(int(s) for s in shape.split(",")))
            assert (count_parameters(m), m.feature_dim) == (int(params.replace(",", "")), int(dim)), \
                f"{name} width {width} K={k} input {shape}"


# -- architecture.md ---------------------------------------------------------------------------


def test_architecture_module_list_is_current():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_architecture.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_architecture_script_lists_every_module():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import build_architecture as ba
    finally:
        sys.path.pop(0)
    listed = ba.build_list()
    for path in (ROOT / "ncbench").rglob("*.py"):
        assert f"](../{path.relative_to(ROOT).as_posix()})" in listed, path


def test_architecture_summary_is_the_first_sentence(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import build_architecture as ba
    finally:
        sys.path.pop(0)
    cases = {
        '"""One line.\n\nMore."""': "One line.",
        '"""A summary that goes on (eq. 7) past\nthe line. Then more text."""':
            "A summary that goes on (eq. 7) past the line.",
        '"""Command-line interface. Each command lives in its own module and is\na thin layer."""':
            "Command-line interface.",
        "x = 1": None,
    }
    for source, expected in cases.items():
        f = tmp_path / "m.py"
        f.write_text(source + "\n")
        assert ba.summary(f) == expected, source
    assert ba.stage_of("ncbench.report.query") == ba.stage_of("ncbench.report") != ba.OTHER
    assert ba.stage_of("ncbench.not_a_module_yet") == ba.OTHER
