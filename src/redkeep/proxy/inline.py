"""Inline requests (`SET a "b c"`), split into arguments the way Redis' `sdssplitargs` does.

An argument is unquoted bytes up to a space, tab, CR or LF, optionally followed by one quoted
part that must end it: "double quotes" take the C escapes (\\n \\r \\t \\b \\a, \\xHH, any
other \\X is X), 'single quotes' only \\'. The request is read only up to a NUL byte, as the C
string it is in Redis.
"""

_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_SPACE = frozenset(b" \t\n\r\v\f")  # isspace(): between arguments
_ENDS_ARGUMENT = frozenset(b" \t\n\r")  # what ends an unquoted argument
_HEX = frozenset(b"0123456789abcdefABCDEF")
_QUOTES = (ord('"'), ord("'"))
_BACKSLASH = ord("\\")


def split_inline(line: bytes) -> list[bytes] | None:
    """An inline request's arguments; None when the quotes do not balance (or a closing quote
    is followed by more than a space)."""
    line = line.partition(b"\0")[0]
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            return args
        current = bytearray()
        while i < n and line[i] not in _ENDS_ARGUMENT:
            if line[i] in _QUOTES:
                end = _quoted(line, i + 1, line[i], current)
                if end is None:
                    return None
                i = end
                break
            current.append(line[i])
            i += 1
        args.append(bytes(current))


def _quoted(line: bytes, i: int, quote: int, out: bytearray) -> int | None:
    """Append the quoted part that starts at `i` to `out`; where it ends (after the closing
    quote), or None if it has no closing quote followed by a space or the end."""
    n = len(line)
    double = quote == _QUOTES[0]
    while i < n:
        char = line[i]
        nxt = line[i + 1] if i + 1 < n else None
        if char == quote:
            return i + 1 if nxt is None or nxt in _SPACE else None
        if char == _BACKSLASH and double and nxt == ord("x") and _hex_at(line, i + 2):
            out.append(int(line[i + 2 : i + 4], 16))
            i += 4
        elif char == _BACKSLASH and nxt is not None and (double or nxt == quote):
            out.append(_ESCAPES.get(nxt, nxt) if double else nxt)
            i += 2
        else:
            out.append(char)
            i += 1
    return None


def _hex_at(line: bytes, i: int) -> bool:
    return i + 1 < len(line) and line[i] in _HEX and line[i + 1] in _HEX
