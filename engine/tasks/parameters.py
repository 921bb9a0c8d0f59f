"""The forms a task's parameters may take, checked once for every request (``engine.tasks.validate``).

A task declares each parameter as ``name -> (form, required)``. A form is a JSON type (``str``,
``int``, ``float`` (any number), ``bool``, ``list``, ``dict``), a tuple of forms (any one of them), or one of the
forms below: ``ListOf`` (every item of one form), ``DictOf`` (every value of one form), ``PATH``
(text the operating system accepts as a file name) and ``EXTENT``. Requests come from JSON, which
Python reads with NaN and Infinity, so a number must also be finite. ``mismatch`` says what in a
value does not fit its form, so that the refusal names the parameter, the bad part and what is
expected, before any work.
"""
from __future__ import annotations

import errno
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

NAME_MAX = 255  # bytes in one file or folder name on Linux, macOS (APFS) and Windows (NTFS, in characters)
TYPE_NAMES = {str: ("text", "texts"), int: ("a whole number", "whole numbers"), float: ("a number", "numbers"),
              bool: ("true or false", "true or false values"), list: ("a list", "lists"),
              dict: ("a JSON object", "JSON objects")}


@dataclass(frozen=True)
class ListOf:
    item: object
    length: int | None = None


@dataclass(frozen=True)
class DictOf:
    value: object


class _Path:
    """Text naming a file or folder that the operating system accepts (it need not exist yet)."""


class _Extent:
    """[xmin, ymin, xmax, ymax]: four finite numbers with xmin < xmax and ymin < ymax."""


PATH = _Path()
EXTENT = _Extent()


def describe(form, plural: bool = False) -> str:
    """What ``form`` accepts, in words."""
    if isinstance(form, tuple):
        return " or ".join(describe(f, plural) for f in form)
    if isinstance(form, ListOf):
        count = f"{form.length} " if form.length else ""
        return f"{'lists' if plural else 'a list'} of {count}{describe(form.item, True)}"
    if isinstance(form, DictOf):
        return f"{'JSON objects' if plural else 'a JSON object'} of {describe(form.value, True)}"
    if form is PATH:
        return "file paths" if plural else "a file path"
    if form is EXTENT:
        return "extents" if plural else "[xmin, ymin, xmax, ymax] with xmin < xmax and ymin < ymax"
    return TYPE_NAMES[form][plural]


def mismatch(value, form) -> str | None:
    """None when ``value`` has ``form``; else which part of it does not, and why."""
    if isinstance(form, tuple):
        problems = [mismatch(value, f) for f in form]
        if not all(problems):
            return None
        same_kind = [p for f, p in zip(form, problems) if _container(f) is _container_of(value)]
        return same_kind[0] if len(same_kind) == 1 else f"{_shown(value)} is not {describe(form)}"
    if isinstance(form, ListOf) or form is EXTENT:
        return _list_mismatch(value, form)
    if isinstance(form, DictOf):
        if not isinstance(value, dict):
            return f"{_shown(value)} is not {describe(form)}"
        return next((f"{key!r}: {problem}" for key, item in value.items()
                     if (problem := mismatch(item, form.value))), None)
    if form is PATH:
        return _path_mismatch(value)
    if not _is_a(value, form):
        return f"{_shown(value)} is not {describe(form)}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{_shown(value)} is not a finite number"
    return None


def _is_a(value, kind: type) -> bool:
    """JSON's view of types: true/false is not a number, a whole number is a number."""
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, (int, float) if kind is float else kind)


def _list_mismatch(value, form) -> str | None:
    item, length = (float, 4) if form is EXTENT else (form.item, form.length)
    if not isinstance(value, list) or (length and len(value) != length):
        return f"{_shown(value)} is not {describe(form)}"
    for number, element in enumerate(value, start=1):
        problem = mismatch(element, item)
        if problem:
            return f"item {number}: {problem}"
    if form is EXTENT:
        xmin, ymin, xmax, ymax = value
        if not (xmin < xmax and ymin < ymax):
            return (f"{_shown(value)} is inverted or empty (xmin < xmax and ymin < ymax are needed): give the "
                    "corners in the order xmin, ymin, xmax, ymax")
    return None


def _path_mismatch(value) -> str | None:
    if not isinstance(value, str):
        return f"{_shown(value)} is not {describe(PATH)}"
    try:
        os.stat(value)
    except (FileNotFoundError, NotADirectoryError):
        return None  # may not exist yet (an output); each task says what it needs of the file
    except OSError as err:
        return f"{_shown_path(value)} is refused by the operating system ({err.strerror}): {_path_fix(value, err)}"
    except ValueError:
        return f"{_shown_path(value)} holds a NUL character, which no file name may contain"
    return None


def _path_fix(path: str, err: OSError) -> str:
    if err.errno == errno.ENAMETOOLONG:
        longest = max(Path(path).parts, key=lambda part: len(part.encode()))
        if len(longest.encode()) > NAME_MAX:
            return (f"one of its names has {len(longest.encode())} bytes and at most {NAME_MAX} are allowed; "
                    "rename the file or folder, or copy it under a shorter name")
        return f"the whole path has {len(path.encode())} bytes, more than the system allows; move it to a shorter path"
    return "choose a file in a folder you can read (and write, for outputs)"


def _container(form) -> type | None:
    if isinstance(form, ListOf) or form is EXTENT:
        return list
    if isinstance(form, DictOf):
        return dict
    return None


def _container_of(value) -> type | None:
    return type(value) if isinstance(value, (list, dict)) else None


def _shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _shown_path(path: str) -> str:
    return repr(path) if len(path) <= 120 else repr(path[:60] + "..." + path[-50:])
