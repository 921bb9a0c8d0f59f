"""Set custom metadata (``metadata_props``) in an ONNX file without the ``onnx`` package.

An ONNX file is one protobuf ``ModelProto``; its ``metadata_props`` is the repeated field 14 of
``StringStringEntryProto`` messages (key: field 1, value: field 2). Protobuf accepts the entries of
a repeated field anywhere among a message's fields, so setting keys only scans the top-level
fields, drops the entries of those keys and appends new ones: the graph and the weights are copied
byte for byte.
"""
from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from engine.errors import EngineError
from engine.output_files import check_output_file, partial_path, remove_stale_partials, write_failed

GRAPH = 7  # ModelProto.graph: the nodes and the weights stored in the file
METADATA_PROPS = 14  # ModelProto.metadata_props
ENTRY_KEY, ENTRY_VALUE = 1, 2  # StringStringEntryProto.key, .value
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5  # protobuf wire types


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError(f"truncated or overlong varint at byte {position}")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, start, payload start, end) of each top-level field of a message."""
    position = 0
    while position < len(data):
        start = position
        tag, position = _read_varint(data, position)
        number, wire = tag >> 3, tag & 7
        payload = position
        if wire == VARINT:
            _, position = _read_varint(data, position)
        elif wire == LENGTH_DELIMITED:
            length, payload = _read_varint(data, position)
            position = payload + length
        elif wire in (FIXED64, FIXED32):
            position += 8 if wire == FIXED64 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} at byte {start}")
        if number == 0 or position > len(data):
            raise ValueError(f"malformed field at byte {start}")
        yield number, wire, start, payload, position


def _string_field(number: int, text: str) -> bytes:
    raw = text.encode("utf-8")
    return _varint(number << 3 | LENGTH_DELIMITED) + _varint(len(raw)) + raw


def _entry(key: str, value: str) -> bytes:
    body = _string_field(ENTRY_KEY, key) + _string_field(ENTRY_VALUE, value)
    return _varint(METADATA_PROPS << 3 | LENGTH_DELIMITED) + _varint(len(body)) + body


def _entry_key(entry: bytes) -> str | None:
    for number, wire, _, payload, end in _fields(entry):
        if number == ENTRY_KEY and wire == LENGTH_DELIMITED:
            return entry[payload:end].decode("utf-8")
    return None


def graph_sha256(path: str | Path) -> str:
    """SHA-256 of an ONNX file's graph alone (nodes and the weights stored in the file): setting its
    metadata (``write_metadata``, a contract update) leaves it unchanged, new weights change it."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream, mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
        view = memoryview(data)
        try:
            for number, wire, _, payload, end in _fields(data):
                if number == GRAPH and wire == LENGTH_DELIMITED:
                    digest.update(view[payload:end])
        finally:
            view.release()
    return digest.hexdigest()


def with_metadata(data: bytes, entries: dict[str, str]) -> bytes:
    """The serialized ONNX model ``data`` with ``entries`` set in its metadata_props (other keys
    kept). ValueError when ``data`` is not a protobuf message."""
    parts, copied = [], 0
    for number, wire, start, payload, end in _fields(data):
        if number == METADATA_PROPS and wire == LENGTH_DELIMITED and _entry_key(data[payload:end]) in entries:
            parts.append(data[copied:start])
            copied = end
    parts.append(data[copied:])
    return b"".join(parts + [_entry(key, value) for key, value in entries.items()])


def write_metadata(source: str | Path, entries: dict[str, str], target: str | Path,
                   check: Callable[[str], None]) -> None:
    """Write ``source`` with ``entries`` set to ``target`` (may be ``source``) atomically: a
    temporary file beside ``target``, passed to ``check`` (which raises to refuse it), then renamed
    into place. ``source`` is only read unless it is ``target``; nothing is left on failure."""
    source, target = Path(source), Path(target)
    check_output_file(target, "ONNX model", (".onnx",))
    try:
        data = with_metadata(source.read_bytes(), entries)
    except ValueError as bad:
        raise EngineError(f"{source} is not an ONNX model ({bad}); choose the model's .onnx file") from None
    remove_stale_partials(target)
    partial = partial_path(target, ".onnx")
    try:
        try:
            partial.write_bytes(data)
        except OSError as err:
            raise write_failed(target, err) from None
        check(str(partial))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
