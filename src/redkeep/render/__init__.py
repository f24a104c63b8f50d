"""Bundle artifacts as data: templates plus pure functions that return text.

Nothing here touches the filesystem except reading packaged templates; `render.bundle`
lists the files of a bundle and `actions.init` writes them.
"""

import re
from functools import cache


@cache
def templates():
    """The Jinja environment for the packaged templates (strict: a missing value is an error)."""
    import jinja2  # noqa: PLC0415 - only commands that render files load it

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("redkeep.render", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - config files, not HTML
    )
    environment.filters["conf_quote"] = conf_quote
    environment.filters["nginx_quote"] = conf_quote  # nginx quotes and escapes the same way
    return environment


def conf_quote(value: str) -> str:
    """Quote a value for redis.conf (double quotes, backslash escapes) unless it is plain."""
    if re.fullmatch(r"[\w./@:+-]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
