"""Tell people: Slack incoming webhook, Telegram bot API, or a generic JSON webhook.

Failures are always sent, successes only when asked. The webhook URLs and the bot token are
secrets: they come from the environment (or the bundle's .env), never from redkeep.yaml, and
never appear in a message, a report or an error (httpx errors name the URL, so only the
status or the error type is reported).
"""

from collections.abc import Mapping
from dataclasses import dataclass

from redkeep.backup.report import BackupReport, Notification

TIMEOUT = 10.0
SLACK_ENV = "SLACK_WEBHOOK_URL"
TELEGRAM_TOKEN_ENV = "TELEGRAM_BOT_TOKEN"  # noqa: S105 - the variable's name, not a secret
TELEGRAM_CHAT_ENV = "TELEGRAM_CHAT_ID"
WEBHOOK_ENV = "BACKUP_WEBHOOK_URL"


@dataclass(frozen=True)
class Channels:
    slack_url: str | None = None
    telegram_token: str | None = None
    telegram_chat: str | None = None
    telegram_api: str = "https://api.telegram.org"
    webhook_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], telegram_api: str) -> "Channels":
        return cls(
            slack_url=env.get(SLACK_ENV) or None,
            telegram_token=env.get(TELEGRAM_TOKEN_ENV) or None,
            telegram_chat=env.get(TELEGRAM_CHAT_ENV) or None,
            telegram_api=telegram_api.rstrip("/"),
            webhook_url=env.get(WEBHOOK_ENV) or None,
        )


def message(report: BackupReport) -> str:
    """One human line about a run, built from the report (which holds no secret)."""
    where = f"{report.source} -> {report.dest}"
    if report.succeeded:
        size = report.bytes_stored / (1 << 20)
        return (
            f"redkeep backup OK: {where}, id {report.id}, {report.type}, {size:.1f} MiB, "
            f"{report.duration_seconds:.1f}s"
        )
    return f"redkeep backup FAILED: {where}: {report.error or 'unknown error'}"


def send(channels: Channels, report: BackupReport, on_success: bool) -> tuple[Notification, ...]:
    """Send the report to every configured channel; return one result per channel."""
    if report.succeeded and not on_success:
        return ()
    text = message(report)
    posts = []
    if channels.slack_url:
        posts.append(("slack", channels.slack_url, {"text": text}))
    if channels.telegram_token and channels.telegram_chat:
        url = f"{channels.telegram_api}/bot{channels.telegram_token}/sendMessage"
        posts.append(("telegram", url, {"chat_id": channels.telegram_chat, "text": text}))
    if channels.webhook_url:
        posts.append(("webhook", channels.webhook_url, {"text": text, "report": report.to_json()}))
    return tuple(_post(name, url, body) for name, url, body in posts)


def _post(channel: str, url: str, body: dict) -> Notification:
    import httpx  # noqa: PLC0415 - only runs that notify pay for loading it

    try:
        response = httpx.post(url, json=body, timeout=TIMEOUT)
    except httpx.HTTPError as error:
        return Notification(channel, ok=False, error=type(error).__name__)
    if response.is_success:
        return Notification(channel, ok=True)
    return Notification(channel, ok=False, error=f"HTTP {response.status_code}")
