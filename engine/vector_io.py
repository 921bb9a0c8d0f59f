"""Vector output: polygon features written to a GeoPackage with the standard library's sqlite3.

Implements the parts of the OGC GeoPackage 1.3 encoding a feature table needs (spatial reference
system, contents, geometry column, "GP" geometry blobs wrapping little-endian WKB polygons), so
the engine needs no OGR. Written atomically like the rasters (engine/output_files.py).
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.output_files import check_output_file, partial_path, remove_stale_partials, write_failed

SQL_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT"}


@dataclass(frozen=True)
class Field:
    name: str
    kind: type  # int, float or str


def polygon_blob(ring: list[tuple[float, float]], srs_id: int) -> bytes:
    """GeoPackage geometry blob: header with envelope, then WKB Polygon (one closed ring)."""
    if ring[0] != ring[-1]:
        ring = [*ring, ring[0]]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    header = b"GP" + bytes([0, 0b00000011]) + struct.pack("<i", srs_id)  # v0, LE, xy envelope
    header += struct.pack("<4d", min(xs), max(xs), min(ys), max(ys))
    wkb = struct.pack("<BIII", 1, 3, 1, len(ring)) + b"".join(struct.pack("<2d", x, y) for x, y in ring)
    return header + wkb


class GeoPackageLayer:
    """One polygon feature table in a new GeoPackage."""

    def __init__(self, connection: sqlite3.Connection, table: str, fields: list[Field], srs_id: int):
        self.connection, self.table, self.fields, self.srs_id = connection, table, fields, srs_id
        self._bounds = [float("inf"), float("inf"), float("-inf"), float("-inf")]
        self._insert = (
            f'INSERT INTO "{table}" (geom, {", ".join(_quote(f.name) for f in fields)}) '
            f"VALUES (?, {', '.join('?' for _ in fields)})"
        )

    def add(self, ring: list[tuple[float, float]], values: dict) -> None:
        xs, ys = [p[0] for p in ring], [p[1] for p in ring]
        self._bounds = [min(self._bounds[0], *xs), min(self._bounds[1], *ys),
                        max(self._bounds[2], *xs), max(self._bounds[3], *ys)]
        self.connection.execute(self._insert, [polygon_blob(ring, self.srs_id),
                                               *(values.get(f.name) for f in self.fields)])

    def finish(self) -> None:
        if self._bounds[0] != float("inf"):
            self.connection.execute(
                "UPDATE gpkg_contents SET min_x=?, min_y=?, max_x=?, max_y=? WHERE table_name=?",
                (*self._bounds, self.table))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextlib.contextmanager
def atomic_geopackage(path: str, table: str, fields: list[Field], crs_wkt: str, epsg: int | None,
                      description: str = "") -> Iterator[GeoPackageLayer]:
    """Create ``path`` (a new GeoPackage with one polygon layer) only if the block succeeds."""
    target = Path(path)
    check_output_file(target, "GeoPackage", (".gpkg",))
    remove_stale_partials(target)
    partial = partial_path(target, ".gpkg")
    srs_id = epsg or 100000
    connection = sqlite3.connect(partial)
    try:
        try:
            with connection:
                _create_schema(connection, table, fields, srs_id, crs_wkt, epsg, description)
                layer = GeoPackageLayer(connection, table, fields, srs_id)
                yield layer
                layer.finish()
            connection.close()
        except (sqlite3.Error, OSError) as err:  # "database or disk is full", I/O errors
            raise write_failed(target, err) from None
        os.replace(partial, target)
    except BaseException:
        connection.close()
        partial.unlink(missing_ok=True)
        partial.with_name(partial.name + "-journal").unlink(missing_ok=True)
        raise


def _create_schema(connection, table, fields, srs_id, crs_wkt, epsg, description) -> None:
    connection.execute("PRAGMA application_id = 1196444487")  # 'GPKG'
    connection.execute("PRAGMA user_version = 10300")
    connection.executescript("""
        CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY,
            organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL,
            definition TEXT NOT NULL, description TEXT);
        CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL,
            identifier TEXT UNIQUE, description TEXT DEFAULT '',
            last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
            min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER);
        CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL,
            geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, z TINYINT NOT NULL,
            m TINYINT NOT NULL, CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name));
    """)
    connection.executemany(
        "INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)",
        [("Undefined cartesian SRS", -1, "NONE", -1, "undefined", ""),
         ("Undefined geographic SRS", 0, "NONE", 0, "undefined", ""),
         (f"EPSG:{epsg}" if epsg else "custom", srs_id, "EPSG" if epsg else "NONE",
          epsg or srs_id, crs_wkt, "")])
    columns = ", ".join(f"{_quote(f.name)} {SQL_TYPES[f.kind]}" for f in fields)
    connection.execute(f'CREATE TABLE {_quote(table)} (fid INTEGER PRIMARY KEY AUTOINCREMENT, '
                       f'geom POLYGON, {columns})')
    connection.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier, description, srs_id) "
                       "VALUES (?, 'features', ?, ?, ?)", (table, table, description, srs_id))
    connection.execute("INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', 'POLYGON', ?, 0, 0)",
                       (table, srs_id))
