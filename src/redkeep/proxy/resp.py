"""The request side of RESP, scanned the way redis-server reads it, bytes forwarded as they came.

Redis reads a request as multibulk when it starts with '*' (`*<n>\\r\\n` then n times
`$<len>\\r\\n<bytes>\\r\\n`) and as an inline line otherwise (split like `sdssplitargs`:
quotes, escapes; `proxy/inline.py`). The scanner finds frame boundaries and the command name
without building the arguments: payloads are skipped by length, so a large value streams
through in constant memory.
It mirrors Redis' own rules (it finds lines by '\\r', never checks the CRLF after a payload,
parses lengths strictly), so what it calls a frame is what Redis will execute.

A refused request is replaced, in place, by a one-word request Redis does not know; Redis
answers it with an error in the right position of the reply stream (pipelines, MULTI, RESP3
all stay in order, and a refused command inside MULTI makes EXEC abort, as Redis' own
rejections do). The connection stays usable.

Fast path: when a whole chunk is complete frames (the common case for pipelined clients),
hiredis' C reader counts them and the chunk is forwarded untouched. Anything unusual (a frame
split across reads, inline, a command the policy looks at, anything hiredis reads differently)
goes through the exact scanner.
"""

import re
from collections.abc import Callable

import hiredis

from redkeep.proxy.inline import split_inline
from redkeep.proxy.policy import Policy, TokenBucket

# Redis refuses an inline request or header line only when more than PROTO_INLINE_MAX_SIZE
# (64 KiB) is buffered without its end; it reads 16 KiB at a time, so a line of up to 80 KiB
# may pass. The proxy refuses only what Redis always refuses; Redis judges the rest itself.
MAX_INLINE = 64 * 1024 + 16 * 1024
MAX_BULK = 512 * 1024 * 1024  # proto-max-bulk-len's default
MAX_MULTIBULK = 2**31 - 1  # INT_MAX
UNAUTHENTICATED_ARGS = 10  # Redis' limits for a client that has not logged in
UNAUTHENTICATED_BULK = 16 * 1024
NAME_MAX = 64  # longest command or subcommand name the policy knows (deny entries are shorter)
# AUTH/HELLO arguments are held back up to this size (a user name, an option); a longer one
# (a password) is judged by its beginning, so a login never makes the proxy hold much.
CAPTURE_MAX = 256
LOGIN_ARGS = 16  # ... and up to this many of them
# Commands whose arguments the scanner reads: the user name for the access log.
LOGIN = frozenset({b"auth", b"hello"})
# Commands after which a client legitimately sends nothing (spared by the idle timeouts).
WAITING = frozenset(
    {
        b"subscribe",
        b"psubscribe",
        b"ssubscribe",
        b"monitor",
        b"blpop",
        b"brpop",
        b"brpoplpush",
        b"blmove",
        b"blmpop",
        b"bzpopmin",
        b"bzpopmax",
        b"bzmpop",
        b"xread",
        b"xreadgroup",
        b"wait",
        b"waitaof",
    }
)
_NEED_MORE = None
# hiredis makes a list of N slots as soon as it reads an aggregate header `*N`, and freeing the
# slots of a list that never filled takes seconds for a large N (15 bytes froze the loop 5 s).
# A chunk with a count of 100 or more anywhere goes the exact way, which allocates nothing; under
# that, a chunk of nested headers costs at most ~20 slots per byte.
BIG_REQUEST = re.compile(rb"\*\d\d\d")
BIG_AGGREGATE = re.compile(rb"[*~>%|]\d\d\d")
FAST_MARKER_VALUE = b"redkeep-frame-boundary"
FAST_MARKER = b"+%s\r\n" % FAST_MARKER_VALUE


# Ends a stream that broke the protocol: Redis answers the requests before it, then replies
# "Protocol error: invalid multibulk length" and closes, so replies stay in order.
POISON = b"*x\r\n"


class ProtocolViolation(Exception):
    """A request Redis would refuse and close the connection for.

    `forward` holds the requests before it, which still go to Redis (followed by POISON).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.forward = b""


def refusal_frame(text: str) -> bytes:
    """A request Redis answers with `-ERR unknown command '<text>', ...`, in order."""
    word = text.encode()
    return b"*1\r\n$%d\r\n%s\r\n" % (len(word), word)


def strict_int(digits: bytes) -> int | None:
    """A length as Redis' string2ll reads it: no sign but '-', no leading zeros, no spaces."""
    if digits.isdigit() and len(digits) < 20 and (digits[0] != 48 or len(digits) == 1):
        return int(digits)
    if digits[:1] == b"-" and digits[1:].isdigit() and digits[1:2] not in (b"0", b""):
        return -int(digits[1:]) if len(digits) < 21 else None
    return None


class RequestScanner:
    """One connection's request stream: what to forward, what to refuse, what was seen."""

    def __init__(
        self,
        policy: Policy,
        clock: Callable[[], float],
        on_refused: Callable[[bytes, str], None] | None = None,
        auth_required: bool = True,
    ) -> None:
        self.clock = clock
        self.on_refused = on_refused
        self.commands = 0
        self.refused: dict[str, int] = {}
        self.user: str | None = None
        self.logged_in = False
        # Whether Redis makes a new connection log in: only then do its pre-AUTH caps apply
        # (a default user without password is logged in from the first byte).
        self.auth_required = auth_required
        self.born_logged_in = not auth_required
        self.limited = False  # Redis' unauthenticated limits apply now
        self.waiting = False  # subscribed or in a blocking command: silence is expected
        self.pending = b""  # bytes of an undecided frame, held back
        self.skip = 0  # payload bytes of the current frame still to pass (or drop)
        self.args_left = 0  # arguments of the current frame still to come
        self.dropping = False  # the current frame was refused: its bytes are discarded
        self._reader = hiredis.Reader()
        self.set_policy(policy)

    def set_policy(self, policy: Policy) -> None:
        """Apply a (reloaded) policy; a command bucket of the same rate keeps its level."""
        self.policy = policy
        old = getattr(self, "bucket", None)
        if not policy.cmd_rate:
            self.bucket = None
        elif old is None or old.rate != policy.cmd_rate:
            self.bucket = TokenBucket(policy.cmd_rate, self.clock())
        self.denied = policy.denied_commands
        self.denied_sub = policy.denied_subcommands
        self.special = self.denied | set(self.denied_sub) | LOGIN
        if policy.client_idle_timeout or policy.upstream_idle_timeout:
            self.special |= WAITING
        self._update_limited()
        self.rate_text = refusal_frame(
            f"rate limit: more than {policy.cmd_rate:g} commands per second on this "
            "connection (redkeep proxy); slow down"
            if policy.cmd_rate
            else "rate limit"
        )

    def upstream_changed(self, auth_required: bool) -> None:
        """Redis now does (or no longer does) make clients log in. Redis decides per client
        at each request, except that a connection opened while the default user had no
        password counts as logged in for good: mirror both."""
        if self.auth_required:
            self.auth_required = auth_required
            self._update_limited()
        elif auth_required and not self.born_logged_in:
            self.auth_required = True
            self._update_limited()

    def _update_limited(self) -> None:
        self.limited = (
            self.policy.unauthenticated_limits and self.auth_required and not self.logged_in
        )

    def feed(self, data: bytes) -> bytes:
        """The bytes to send to Redis for `data` received from the client.

        Raises ProtocolViolation for what Redis would close the connection for.
        """
        if (
            not self.pending
            and not self.skip
            and not self.args_left
            and not self.dropping
            and data[:1] == b"*"
            and not BIG_REQUEST.search(data)
            and self._fast(data)
        ):
            return data
        return self._scan(data)

    def _fast(self, data: bytes) -> bool:  # noqa: PLR0912 - one loop, kept inline for speed
        """Count complete frames with hiredis; False (nothing counted) when unsure.

        hiredis and Redis read a multibulk request alike: the same strict lengths, payloads
        taken by length, the two bytes after a payload skipped unchecked, a line that does not
        end in CRLF refused by hiredis. Where they differ, Redis refuses the request and closes
        the connection, running nothing after it (a `+` or `:` argument, a nested array), or
        hiredis returns something that is not a list. Except for two RESP3 types, `~` (set) and
        `|` (attribute), which hiredis reads as lists where Redis reads an inline request: in
        a chunk without those bytes, every list hiredis returns began with '*' where Redis
        starts a request, so its frames (and their names) are Redis' own. With them, or before
        AUTH (the caps need the sizes), each frame must also start with '*' at the offset its
        canonical length puts it.
        """
        odd = b"~" in data or b"|" in data  # hiredis reads these as lists, Redis as inline
        if (odd or b">" in data or b"%" in data) and BIG_AGGREGATE.search(data):
            return False  # see BIG_AGGREGATE: not for hiredis
        reader = self._reader
        reader.feed(data)
        special = self.special
        sized = self.limited or odd
        # Before AUTH, frames over Redis' caps go the exact way (which refuses them).
        max_args, max_bulk = (
            (UNAUTHENTICATED_ARGS, UNAUTHENTICATED_BULK)
            if self.limited
            else (MAX_MULTIBULK, MAX_BULK)
        )
        count = 0
        pos = 0
        frame = None
        try:
            while True:
                frame = reader.gets()
                if frame is False:
                    break
                if type(frame) is not list or not frame:
                    break
                if sized:
                    args = len(frame)
                    if data[pos] != 42 or args > max_args:  # '*'
                        break
                    size = (4 if args < 10 else 3 + len(str(args))) + 6 * args
                    for arg in frame:
                        length = len(arg) if type(arg) is bytes else -1  # bulk strings only
                        if length < 0 or length > max_bulk:
                            size = -1
                            break
                        size += length if length < 10 else length + len(str(length)) - 1
                    if size < 0:
                        break
                    pos += size
                name = frame[0]
                # A NUL in the name: Redis may resolve it as its prefix (see command_name).
                if name.lower() in special or b"\0" in name:
                    break
                count += 1
            if frame is False and (not sized or pos == len(data)):
                # hiredis swallows a partial frame without a trace (has_data() is False), so
                # prove the reader sits on a boundary: only then does a marker come back whole.
                reader.feed(FAST_MARKER)
                complete = reader.gets() == FAST_MARKER_VALUE and reader.gets() is False
            else:
                complete = False
        except Exception:  # noqa: BLE001 - anything hiredis cannot read goes the exact way
            complete = False
        if complete and self.bucket is not None:
            complete = self.bucket.take(self.clock(), count)
        if not complete:
            self._reader = hiredis.Reader()
            return False
        self.commands += count
        if self.waiting and count:
            self.waiting = False
        return True

    def _scan(self, data: bytes) -> bytes:
        buf = self.pending + data if self.pending else data
        self.pending = b""
        out: list[bytes] = []
        n = len(buf)
        pos = 0
        emit = 0  # start of the bytes not yet forwarded or dropped
        hold = n  # bytes from here on wait for more data
        try:
            while pos < n:
                if self.skip:
                    step = min(self.skip, n - pos)
                    pos += step
                    self.skip -= step
                    continue
                if self.args_left:
                    header = self._bulk_header(buf, pos, n)
                    if header is _NEED_MORE:
                        hold = pos
                        break
                    length, pos = header
                    self.skip = length + 2
                    self.args_left -= 1
                    continue
                if self.dropping:  # the refused frame has ended
                    self.dropping = False
                    emit = pos
                frame = self._frame(buf, pos, n)
                if frame is _NEED_MORE:
                    hold = pos
                    break
                end, args, args_left, skip = frame
                refusal = self._judge(args) if args else None
                if refusal is not None:
                    if emit < pos:
                        out.append(buf[emit:pos])
                    out.append(refusal)
                    self.dropping = True
                pos = end
                self.args_left = args_left
                self.skip = skip
        except ProtocolViolation as violation:
            if not self.dropping and emit < pos:
                out.append(buf[emit:pos])
            violation.forward = b"".join(out)
            raise
        if not self.dropping and emit < hold:
            out.append(buf[emit:hold] if emit or hold < n else buf)
        if hold < n:
            self.pending = buf[hold:]
        return out[0] if len(out) == 1 else b"".join(out)

    def _bulk_header(self, buf: bytes, pos: int, n: int) -> tuple[int, int] | None:
        """(length, payload start) of `$<len>\\r\\n` at pos, or None if incomplete."""
        if buf[pos] != 36:  # '$'
            raise ProtocolViolation(f"Protocol error: expected '$', got '{chr(buf[pos])}'")
        line = _count_line(buf, pos, n, "bulk")
        if line is _NEED_MORE:
            return _NEED_MORE
        length, start = line
        if length is None or length < 0 or length > MAX_BULK:
            raise ProtocolViolation("Protocol error: invalid bulk length")
        if length > UNAUTHENTICATED_BULK and self.limited:
            raise ProtocolViolation("Protocol error: unauthenticated bulk length")
        return length, start

    def _frame(self, buf: bytes, pos: int, n: int) -> tuple[int, list, int, int] | None:
        """(end, captured args, args left, bytes to skip) of the frame at pos, or None."""
        if buf[pos] != 42:  # '*'
            return self._inline(buf, pos, n)
        head = self._multibulk_header(buf, pos, n)
        if head is _NEED_MORE:
            return _NEED_MORE
        count, at = head
        if count <= 0:  # an empty request: Redis skips it
            return at, [], 0, 0
        return self._arguments(buf, at, n, count)

    def _multibulk_header(self, buf: bytes, pos: int, n: int) -> tuple[int, int] | None:
        line = _count_line(buf, pos, n, "mbulk")
        if line is _NEED_MORE:
            return _NEED_MORE
        count, start = line
        if count is None or count > MAX_MULTIBULK:
            raise ProtocolViolation("Protocol error: invalid multibulk length")
        if count > UNAUTHENTICATED_ARGS and self.limited:
            raise ProtocolViolation("Protocol error: unauthenticated multibulk length")
        return count, start

    def _arguments(
        self, buf: bytes, at: int, n: int, count: int
    ) -> tuple[int, list, int, int] | None:
        """The arguments the policy needs (the name, a subcommand, a login), held until whole.

        A name or subcommand longer than NAME_MAX is judged by its first NAME_MAX + 1 bytes:
        that is enough to see a NUL (where Redis may cut it) or that it is no name we deny.
        """
        args: list[bytes] = []
        want = 1
        while len(args) < want:
            if at >= n:
                return _NEED_MORE
            header = self._bulk_header(buf, at, n)
            if header is _NEED_MORE:
                return _NEED_MORE
            length, start = header
            if start + length + 2 > n:  # the payload is not all here
                limit = NAME_MAX if len(args) < want_names(args, self.denied_sub) else CAPTURE_MAX
                if length <= limit or n - start <= limit:
                    return _NEED_MORE
                # Too long to hold whole: decide now on its beginning, pass the rest as it comes.
                args.append(buf[start : start + limit + 1])
                return start, args, count - len(args), length + 2
            args.append(buf[start : start + length])
            at = start + length + 2
            if len(args) == 1:
                name = command_name(args[0])
                if name in LOGIN:
                    want = min(count, LOGIN_ARGS)
                elif name in self.denied_sub:
                    want = min(count, 2)
        return at, args, count - len(args), 0

    def _inline(self, buf: bytes, pos: int, n: int) -> tuple[int, list, int, int] | None:
        newline = buf.find(b"\n", pos, pos + MAX_INLINE + 1)
        if newline < 0:
            if n - pos > MAX_INLINE:
                raise ProtocolViolation("Protocol error: too big inline request")
            return _NEED_MORE
        line = buf[pos:newline]
        if line.endswith(b"\r"):
            line = line[:-1]
        args = split_inline(line)
        if args is None:
            raise ProtocolViolation("Protocol error: unbalanced quotes in request")
        return newline + 1, args, 0, 0

    def _judge(self, args: list[bytes]) -> bytes | None:
        """Count a request; the replacement frame if it is refused, else None."""
        name = command_name(args[0])
        self.commands += 1
        reason = shown = None
        if name in self.special:
            shown = self._denied(name, args)
            if shown is not None:
                reason = "command"
            elif name in LOGIN:
                self._login(name, args)
            if name in WAITING:
                self.waiting = True
        elif self.waiting and name not in (b"ping",):
            self.waiting = False
        if reason is None and self.bucket is not None and not self.bucket.take(self.clock()):
            reason = "rate"
            shown = name.upper().decode("ascii", "replace")
        if reason is None:
            return None
        self.refused[reason] = self.refused.get(reason, 0) + 1
        if self.on_refused is not None:
            self.on_refused(shown.encode(), reason)
        if reason == "rate":
            return self.rate_text
        return refusal_frame(f"{shown} is denied by the redkeep proxy policy")

    def _denied(self, name: bytes, args: list[bytes]) -> str | None:
        """The denied command as shown in the refusal ('SCRIPT KILL'), or None if allowed."""
        shown = name.upper().decode("ascii", "replace")
        if name in self.denied:
            return shown
        if name not in self.denied_sub:
            return None
        if b"\0" in args[0]:  # no client sends this; Redis may run any subcommand of it
            return shown
        if len(args) > 1:
            sub = command_name(args[1])
            if sub in self.denied_sub[name]:
                return f"{shown} {sub.upper().decode('ascii', 'replace')}"
        return None

    def _login(self, name: bytes, args: list[bytes]) -> None:
        """Note who logs in (never the password), reading the options as Redis does:
        AUTH [user] pass; HELLO [protover [AUTH user pass] [SETNAME name]] in any order."""
        user = None
        if name == b"auth" and len(args) in (2, 3):
            user = args[1] if len(args) == 3 else b"default"
        elif name == b"hello":
            index = 2
            while index < len(args):
                option = args[index].lower()
                if option == b"auth" and index + 2 < len(args):
                    user = args[index + 1]
                    index += 3
                elif option == b"setname" and index + 1 < len(args):
                    index += 2
                elif len(args) < LOGIN_ARGS:  # a syntax error: Redis runs none of it
                    return
                else:  # the options go on beyond what was held back
                    break
        if user is not None:
            self.user = user.decode("utf-8", "replace")[:128]
            self.logged_in = True
            self._update_limited()


def command_name(raw: bytes) -> bytes:
    """The command (or subcommand) Redis may run for this name: lower case, cut at a NUL.

    Redis 7.0 finds a command by hashing the whole name but compares names with strcasecmp,
    which stops at the first NUL: `FLUSHALL\\0x` runs as FLUSHALL when the hashes happen to
    share a bucket. Judged by its prefix, such a name can never slip past the policy.
    """
    if b"\0" in raw:
        raw = raw.partition(b"\0")[0]
    return raw.lower()


def want_names(args: list[bytes], denied_sub: dict) -> int:
    """How many leading arguments are names (command, subcommand) rather than login data."""
    if args and command_name(args[0]) in denied_sub:
        return 2
    return 1


def _count_line(buf: bytes, pos: int, n: int, kind: str) -> tuple[int | None, int] | None:
    """The number after the type byte at pos (None if not one) and where the line ends; None
    while the line is incomplete. Redis ends it at '\\r' and skips the next byte unchecked."""
    cr = buf.find(b"\r", pos, pos + MAX_INLINE)
    if cr < 0 or cr + 1 >= n:
        if n - pos > MAX_INLINE:
            raise ProtocolViolation(f"Protocol error: too big {kind} count string")
        return _NEED_MORE
    return strict_int(buf[pos + 1 : cr]), cr + 2
