"""A change made node by node, recorded so that a failure part-way can undo it everywhere.

Each command that changes a node is recorded with the command that reverses it; ACL SAVE and
CONFIG REWRITE are recorded as "this node's files were written". Rolling back sends the
reverse commands newest first, writes the files again on the nodes that had written them,
and then reads each user back (ACL GETUSER) to prove the nodes are as they were. Whatever
could not be undone is said, node by node.
"""

import contextlib
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from redkeep.actions.nodes import NodeError, NodeSession
from redkeep.errors import RedkeepError
from redkeep.fsutil import SECRET_MODE
from redkeep.redis.acl import AclUser, parse_getuser


def acl_user(session: NodeSession, name: str) -> AclUser | None:
    """`ACL GETUSER name` on one node, or None when it has no such user."""
    return parse_getuser(session.run("ACL GETUSER", "ACL", "GETUSER", name))


def same_user(a: AclUser | None, b: AclUser | None) -> bool:
    """The same user as far as logging in goes: flags, rules, and the same set of password
    hashes (an undo may put a hash back in another place of the list)."""
    if a is None or b is None:
        return a is b
    return (a.flags, set(a.passwords), a.commands, a.keys, a.channels) == (
        b.flags,
        set(b.passwords),
        b.commands,
        b.keys,
        b.channels,
    )


def make_private(path: Path) -> None:
    """ACL SAVE and CONFIG REWRITE write with the server's umask; the files hold password
    hashes (and masterauth), so keep them private to the owner. A file that belongs to
    someone else (a container's) is not ours to change."""
    with contextlib.suppress(OSError):
        if path.exists():
            path.chmod(SECRET_MODE)


@dataclass(frozen=True)
class Undo:
    session: NodeSession
    label: str  # what the reverse command is, for messages (never a secret)
    args: tuple[str, ...]


@dataclass
class ChangeLog:
    """The changes made so far for user `user`, node by node."""

    user: str
    before: dict[str, AclUser | None]  # node name -> the user as it was, where it is held
    undos: list[Undo] = field(default_factory=list)
    # (node, what) -> how to write that node's file again: ACL SAVE, CONFIG REWRITE
    written: dict[tuple[str, str], Callable[[], None]] = field(default_factory=dict)
    sessions: dict[str, NodeSession] = field(default_factory=dict)
    # The passwords the change sends. Redis repeats a refused ACL SETUSER modifier in its error
    # reply ("Error in ACL SETUSER modifier '<PASSWORD>': ..."): they are cut from messages.
    secrets: tuple[str, ...] = ()

    def change(
        self, session: NodeSession, label: str, args: tuple[str, ...], undo: tuple[str, ...]
    ) -> None:
        """Send `args` to the node; remember `undo` (only once the change is made)."""
        session.run(label, *args)
        self.sessions.setdefault(session.name, session)
        self.undos.append(Undo(session, label, undo))

    def write_files(self, session: NodeSession, what: str, write: Callable[[], None]) -> None:
        """Have the node write a file (`what`: ACL SAVE, CONFIG REWRITE); a rollback calls
        `write` again once the node's changes are undone, so the file is as before too."""
        write()
        self.sessions.setdefault(session.name, session)
        self.written.setdefault((session.name, what), write)

    @property
    def changed(self) -> list[str]:
        """The nodes changed so far, in the order they were first changed."""
        return list(self.sessions)

    def roll_back(self) -> dict[str, str]:
        """Undo every change, newest first, and prove it; return {node: what is not undone}."""
        problems: dict[str, str] = {}
        for undo in reversed(self.undos):
            if undo.session.name not in problems:  # a node that failed once is not guessed at
                problems |= _attempt(undo.session, lambda u=undo: u.session.run(u.label, *u.args))
        for (name, _), write in self.written.items():
            if name not in problems:
                problems |= _attempt(self.sessions[name], write)
        for name, session in self.sessions.items():
            if name in problems or name not in self.before:
                continue
            try:
                now = acl_user(session, self.user)
            except NodeError as error:
                problems[name] = error.reason
                continue
            if not same_user(now, self.before[name]):
                problems[name] = f"ACL GETUSER {self.user} differs from before the change"
        return problems

    @contextlib.contextmanager
    def undone_on_failure(
        self,
        what: str,
        hint: str,
        note: str = "",
        done: Callable[[], bool] | None = None,
        after: str = "",
    ) -> Iterator[None]:
        """Within the block, a failure or an interruption (Ctrl-C, SIGTERM, SIGHUP) rolls every
        node back and raises the one line `failure` makes of it; a second signal does not cut
        the rollback short. `done`: the change took effect already (an interruption after its
        last step): then nothing is rolled back, and `after` says where things stand."""
        try:
            yield
        except RedkeepError as error:
            with _signals_held():
                raise self.failure(error, what, hint, note) from None
        except KeyboardInterrupt:
            if done is not None and done():
                raise RedkeepError(f"interrupted after the last step: {after}") from None
            with _signals_held():
                raise self.failure(RedkeepError("interrupted"), what, hint, note) from None

    def failure(self, error: RedkeepError, what: str, hint: str, note: str = "") -> RedkeepError:
        """Roll back, then one line: where `what` failed, which nodes were changed and rolled
        back, which could not be (`hint`: what to do about those), and `note`. The exit status
        is the failure's (3 for a node that cannot be reached or refuses a login, else 1)."""
        changed = self.changed
        problems = self.roll_back()
        restored = [name for name in changed if name not in problems]
        message = f"{what}: {error.message}"
        if not changed:
            message += "; no node had been changed"
        if restored:
            message += (
                f"; rolled back {', '.join(restored)} (each as before: ACL GETUSER {self.user} "
                "compared)"
            )
        if problems:
            listed = "; ".join(f"{name}: {reason}" for name, reason in problems.items())
            message += f"; could NOT roll back {listed} ({hint})"
        if note:
            message += f"; {note}"
        return RedkeepError(self.redacted(message), error.status, error.kind)

    def redacted(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "<password>")
        return text


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP ignored while a rollback runs (it is bounded by the nodes'
    timeouts): stopping it half-way would leave nodes unlike each other and unsaid."""
    held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in held}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _attempt(session: NodeSession, action: Callable[[], object]) -> dict[str, str]:
    try:
        action()
    except NodeError as error:
        return {session.name: error.reason}
    return {}
