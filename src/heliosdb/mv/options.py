"""The WITH (...) options of a materialized view: names, values, defaults."""

from __future__ import annotations

from typing import Any

from heliosdb import errors

STRATEGIES = ("incremental", "deferred", "on_demand", "immediate")
PRIORITIES = ("critical", "high", "medium", "low")
PRIORITY_RANK = {p: i for i, p in enumerate(PRIORITIES)}  # lower runs first

DEFAULTS: dict[str, Any] = {
    "maintenance_strategy": "incremental",
    "max_cpu_percent": 80.0,
    "staleness_threshold": 0.2,
    "max_staleness_seconds": 300.0,
    "priority": "medium",
}


def _bad(message: str, hint: str) -> errors.Error:
    return errors.lookup("22023")(message, hint=hint, sqlstate="22023")


# The largest max_staleness_seconds: about 31 years. Larger (or infinite) values have no use, do not fit
# JSON (infinity) and push next_scheduled past the dates clients can read.
MAX_STALENESS_SECONDS = 1e9


def _number(name: str, text: str, lo: float, hi: float) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (lo <= value <= hi):  # NaN compares false: refused too, as are infinities
        raise _bad(f'invalid value for option "{name}": "{text}"', f"{name} is a number between {lo:.15g} and {hi:.15g}.")
    return value


def validate(raw: dict[str, str]) -> dict[str, Any]:
    """Checked, typed options (only those given); errors list the valid names and values."""
    out: dict[str, Any] = {}
    for key, text in raw.items():
        name = key.lower()
        value = text.strip().strip("'").lower() if isinstance(text, str) else text
        if name == "maintenance_strategy":
            if value not in STRATEGIES:
                raise _bad(f'invalid value for option "maintenance_strategy": "{text}"',
                           "Valid values: " + ", ".join(STRATEGIES) + ".")
            out[name] = value
        elif name == "priority":
            if value not in PRIORITIES:
                raise _bad(f'invalid value for option "priority": "{text}"', "Valid values: " + ", ".join(PRIORITIES) + ".")
            out[name] = value
        elif name == "max_cpu_percent":
            out[name] = _number(name, value, 0, 100)
        elif name == "staleness_threshold":
            out[name] = _number(name, value, 0, 1)
        elif name == "max_staleness_seconds":
            out[name] = _number(name, value, 0, MAX_STALENESS_SECONDS)
        else:
            raise _bad(f'unrecognized materialized view option "{key}"',
                       "Valid options: " + ", ".join(DEFAULTS) + ".")
    return out


def defaults_of(names: list[str]) -> dict[str, Any]:
    """RESET ( name, ... ): the defaults of those options; an unknown name is 22023 as in validate."""
    for name in names:
        if name.lower() not in DEFAULTS:
            raise _bad(f'unrecognized materialized view option "{name}"', "Valid options: " + ", ".join(DEFAULTS) + ".")
    return {name.lower(): DEFAULTS[name.lower()] for name in names}


def with_defaults(opts: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULTS, **opts}
