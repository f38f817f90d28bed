"""The emulator's settings: one frozen value, from Python or from ``rhflow emulator`` options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rhflow.errors import UsageError

MIB = 1024 * 1024
#: Section 1.3 of the API document: consumer keys run one task at a time, enterprise keys 50.
ACCOUNT_SLOTS = {"consumer": 1, "enterprise": 50}


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How the emulator behaves; every field has a default so ``EmulatorConfig()`` just works.

    Durations are ``(min, max)`` seconds; each task draws its own from a generator seeded by
    ``seed``. ``api_keys`` empty means any non-empty key is accepted.
    """

    host: str = "127.0.0.1"
    port: int = 0
    task_seconds: tuple[float, float] = (2.0, 2.0)
    queue_seconds: tuple[float, float] = (0.2, 1.0)
    account: str = "enterprise"
    concurrency: int | None = None
    fail_rate: float = 0.0
    error_rate: float = 0.0
    latency: float = 0.0
    websocket: bool = True
    workflows_dir: str | None = None
    #: API-format workflows to serve as well, by workflow id (``rhflow run --emulator`` passes
    #: each step's ``workflow_file`` here, so a user's own pipeline runs as written).
    workflows: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    api_keys: tuple[str, ...] = ()
    seed: int = 0
    coins: int = 100000
    money: float = 1000.0
    currency: str = "CNY"  # of an enterprise key's money (accountStatus ``currency``)
    outputs_style: str = "codes"
    traceback_style: str = "string"
    upload_limit: int = 30 * MIB
    personal_queue_limit: int = 1000
    webhook_retries: int = 3
    webhook_retry_delay: float = 0.5
    webhook_timeout: float = 5.0
    ws_idle_seconds: float = 30.0
    previews: bool = False
    workflow_id_check: str = "document"
    cancel_unknown: int = 423

    def __post_init__(self) -> None:
        for name in ("task_seconds", "queue_seconds"):
            value: Any = getattr(self, name)
            if isinstance(value, (int, float)):
                value = (float(value), float(value))
            object.__setattr__(self, name, _checked_range(name, tuple(value)))
        object.__setattr__(self, "api_keys", tuple(self.api_keys))
        _check(self)

    @property
    def slots(self) -> int:
        """Tasks a key may have queued or running: ``concurrency``, else the account's own."""
        if self.concurrency is not None:
            return self.concurrency
        return ACCOUNT_SLOTS.get(self.account, 1)

    @property
    def enterprise(self) -> bool:
        return self.account == "enterprise"

    @property
    def api_type(self) -> str:
        """accountStatus' apiType: NORMAL for consumer keys, EXCLUSIVE for enterprise ones."""
        return "EXCLUSIVE" if self.enterprise else "NORMAL"

    @classmethod
    def from_cli(cls, **options: Any) -> EmulatorConfig:
        """Build from the click options of ``rhflow emulator``; bad values raise UsageError."""
        values = dict(options)
        if "no_websocket" in values:
            values["websocket"] = not values.pop("no_websocket")
        for name in ("task_seconds", "queue_seconds"):
            if isinstance(values.get(name), str):
                values[name] = parse_seconds(values[name], option="--" + name.replace("_", "-"))
        if values.get("api_keys") is not None:
            values["api_keys"] = tuple(values["api_keys"])
        if isinstance(values.get("cancel_unknown"), str):
            values["cancel_unknown"] = int(values["cancel_unknown"])
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise UsageError(f"unknown emulator option(s): {', '.join(unknown)}")
        values = {key: value for key, value in values.items() if value is not None}
        return cls(**values)


def parse_seconds(text: str, *, option: str = "--task-seconds") -> tuple[float, float]:
    """``"2"`` -> (2.0, 2.0); ``"1-3"`` -> (1.0, 3.0); anything else is a UsageError."""
    parts = text.strip().split("-")
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2):
        raise UsageError(
            f"{option} {text!r} is not a duration: write seconds as S or MIN-MAX, e.g. 2 or 0.5-3"
        )
    low, high = numbers[0], numbers[-1]
    return _checked_range(option, (low, high))


def _checked_range(name: str, value: tuple[Any, ...]) -> tuple[float, float]:
    if len(value) != 2:
        raise UsageError(f"{name} must be (min, max) seconds, got {value!r}")
    low, high = float(value[0]), float(value[1])
    if low < 0 or high < low:
        raise UsageError(
            f"{name} {low:g}-{high:g} is not a valid range: "
            "both ends must be >= 0 and MIN must not exceed MAX"
        )
    return (low, high)


def _name(field: str) -> str:
    """``fail_rate (--fail-rate)``: the field and the CLI option that sets it."""
    return f"{field} (--{field.replace('_', '-')})"


def _check(config: EmulatorConfig) -> None:
    problems = []
    for name in ("fail_rate", "error_rate"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            problems.append(f"{_name(name)} must be between 0 and 1, got {getattr(config, name)}")
    if config.concurrency is not None and config.concurrency < 1:
        problems.append(f"{_name('concurrency')} must be at least 1, got {config.concurrency}")
    if config.account not in ACCOUNT_SLOTS:
        problems.append(
            f"{_name('account')} must be consumer or enterprise, got {config.account!r}"
        )
    if config.money < 0 or config.ws_idle_seconds <= 0:
        problems.append("money must be >= 0 and ws_idle_seconds > 0")
    if not config.currency.strip() or len(config.currency) > 16:
        problems.append(f"{_name('currency')} must be a short name such as CNY or USD")
    if config.workflow_id_check not in ("document", "observed"):
        problems.append(
            f"{_name('workflow_id_check')} must be document or observed, "
            f"got {config.workflow_id_check!r}"
        )
    if config.cancel_unknown not in (423, 807):
        problems.append(
            f"{_name('cancel_unknown')} must be 423 or 807, got {config.cancel_unknown}"
        )
    if config.latency < 0:
        problems.append(f"{_name('latency')} must be >= 0 seconds, got {config.latency}")
    if not 0 <= config.port <= 65535:
        problems.append(f"{_name('port')} must be 0-65535, got {config.port}")
    if config.coins < 0:
        problems.append(f"{_name('coins')} must be >= 0, got {config.coins}")
    if config.outputs_style not in ("codes", "plain"):
        problems.append(f"outputs_style must be 'codes' or 'plain', got {config.outputs_style!r}")
    if config.traceback_style not in ("string", "list"):
        problems.append(
            f"traceback_style must be 'string' or 'list', got {config.traceback_style!r}"
        )
    if config.upload_limit < 1 or config.personal_queue_limit < 0:
        problems.append("upload_limit must be positive and personal_queue_limit >= 0")
    if any(not key for key in config.api_keys):
        problems.append("api_keys must not contain an empty key")
    if problems:
        raise UsageError("invalid emulator settings: " + "; ".join(problems))
