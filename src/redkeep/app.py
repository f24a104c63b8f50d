"""The Application object: the one place commands send output through.

Commands never print or exit directly (httpie's Environment, hatch's Application). They call
`app.say`, `app.table`, `app.emit_json` and raise `RedkeepError`; tests pass their own streams.
"""

import json
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

PIPE_WIDTH = 160
# Unicode categories a terminal acts on instead of showing: control characters (ESC starts
# escape sequences), format characters (bidi overrides reorder what is shown), line breaks.
HIDDEN_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


def visible(text: str, keep: str = "\n") -> str:
    """`text` with what a terminal would act on (ESC, BEL, bidi overrides...) escaped as
    \\xNN or \\uNNNN: names and values from a server we do not control are shown, never run.
    Characters in `keep` (the newline, by default) pass as they are."""
    if text.isprintable():
        return text
    return "".join(
        char
        if char in keep or unicodedata.category(char) not in HIDDEN_CATEGORIES
        else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


@dataclass
class Application:
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    json_mode: bool = False
    debug: bool = False

    def say(self, text: str = "") -> None:
        """Write a line of human output (suppressed in JSON mode, where stdout is data)."""
        if not self.json_mode:
            print(visible(text), file=self.stdout)

    def write(self, text: str) -> None:
        """Write text to stdout as it is (generated files, YAML)."""
        self.stdout.write(text)

    def error(self, text: str) -> None:
        """Write a line to stderr, in every mode (e.g. why a health check failed)."""
        print(visible(text), file=self.stderr)

    def warn(self, text: str) -> None:
        """Write a warning to stderr, in every mode."""
        print(f"redkeep: warning: {visible(text)}", file=self.stderr)

    def emit_json(self, data: Any) -> None:
        """Write one JSON document to stdout."""
        print(json.dumps(data, indent=2, sort_keys=False, default=str), file=self.stdout)

    def table(
        self, columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None
    ) -> None:
        """Render a table of rows (human mode only)."""
        if self.json_mode:
            return
        from rich.table import Table  # noqa: PLC0415 - rich loads slowly; only tables need it

        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(_cell(item) for item in row))
        self._print(table)

    def pairs(self, rows: Iterable[tuple[str, Any]], title: str | None = None) -> None:
        """Render label/value lines as a two-column table without a header (human mode only)."""
        if self.json_mode:
            return
        from rich.table import Table  # noqa: PLC0415 - rich loads slowly; only tables need it

        table = Table(title=title, title_justify="left", show_header=False, show_edge=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for label, value in rows:
            table.add_row(label, _cell(value))
        self._print(table)

    def _print(self, renderable: Any) -> None:
        from rich.console import Console  # noqa: PLC0415

        # Not a terminal (a pipe, a log): do not squeeze tables into 80 columns.
        width = None if self.stdout.isatty() else PIPE_WIDTH
        Console(file=self.stdout, highlight=False, width=width).print(renderable)


def _cell(value: Any) -> Any:
    """A table cell as plain text: escaped (`visible`), and never read as rich markup (a
    user named "[red]x" is shown as it is)."""
    from rich.text import Text  # noqa: PLC0415 - with the table

    return Text(visible("" if value is None else str(value)))
