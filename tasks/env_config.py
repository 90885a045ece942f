"""The ``env`` section of a task yaml -> a validated dict of task constants (shared by the embedded tasks).

Keys are the Omniverse Isaac Gym yaml names, including OIGE's nested groups (``learn:``, ``control:``,
``randomCommandVelocityRanges:``, ...). A task declares its defaults as a (nested) dict; the user's ``env``
section may override any subset. Unknown keys and wrongly shaped values are errors, so a typo never passes
silently.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence


def merge_env_cfg(defaults: Mapping[str, Any], overrides: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``defaults`` updated with ``overrides``, recursively; values are cast to the defaults' types.

    A default that is a dict is a group (its override must be a mapping of some of its keys); a list default
    needs a list of the same length (numbers); an int default needs an integer; a float default a number.

    Raises:
        ValueError: an override key is unknown (the message names it with its group, e.g. ``'learn.foo'``,
            and lists the accepted keys), or a value has the wrong type or length.
    """
    merged: Dict[str, Any] = {}
    for key in overrides:
        if key not in defaults:
            accepted = ", ".join(f"{prefix}{k}" for k in defaults)
            raise ValueError(f"unknown env_cfg key {prefix + str(key)!r}; accepted keys: {accepted}")
    for key, default in defaults.items():
        name = prefix + key
        if key not in overrides:
            merged[key] = merge_env_cfg(default, {}, name + ".") if isinstance(default, Mapping) else default
            continue
        value = overrides[key]
        if isinstance(default, Mapping):
            if not isinstance(value, Mapping):
                raise ValueError(f"env_cfg key {name!r}={value!r} is invalid: expected a mapping of "
                                 f"{', '.join(default)}")
            merged[key] = merge_env_cfg(default, value, name + ".")
        elif isinstance(default, (list, tuple)):
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != len(default):
                raise ValueError(f"env_cfg key {name!r}={value!r} is invalid: expected a list of "
                                 f"{len(default)} numbers")
            merged[key] = [_number(name, v, float) for v in value]
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"env_cfg key {name!r}={value!r} is invalid: expected true or false")
            merged[key] = value
        elif isinstance(default, int):
            merged[key] = _number(name, value, int)
        else:
            merged[key] = _number(name, value, float)
    return merged


def _number(name: str, value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        expected = "an integer" if kind is int else "a number"
        raise ValueError(f"env_cfg key {name!r}={value!r} is invalid: expected {expected}")
    return kind(value)
