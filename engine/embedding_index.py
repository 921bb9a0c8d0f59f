"""The on-disk search index: tile embeddings of raster layers, their cache keys, and the query.

An index is a folder::

    manifest.json              version, embedding space and dim, one entry per indexed layer
    <entry id>.embeddings.npy  float16 [tiles, dim], L2-normalised (the cache of one layer)
    <entry id>.tiles.npy       int32 [tiles, 2]: (row, col) of each tile's top-left pixel in the entry's grid
    store-<g>.npy, store-<g>.rows.npy
                               every entry's embeddings in one float32 array, grouped by inverted list,
                               and (entry, tile) of each row; a new generation <g> whenever the entries
                               change. float32 because numpy converts float16 slower than it multiplies
                               float32: at 10^6 tiles a query's scan took 50 ms from float16, 5 ms
                               from float32 (bench/search.py)
    store-<g>.lists.npz        inverted-file lists: centroids [lists, dim] and row offsets [lists + 1]

An entry's id IS its cache key: a hash of the layer's name, its files (resolved path, size, modification
time), the model file (path, size, modification time) and the tiling (tile size, stride, band
mapping, extent, validity threshold). Indexing an unchanged layer again finds its id in the
manifest and reuses the files (no model run); a changed layer gets a new id, and the entry of the
same name is replaced. Every file is written under a temporary name and renamed (engine/output_files.py),
and a build commits by replacing the manifest, which names the store generation it uses: a
cancelled or failed build (a full disk, a killed process) leaves the previous index exactly as it
was, and deletes its own files (and the index folder, when the build created it).

Search ranks tiles by the dot product (cosine) between a query embedding and the stored ones.
Small indexes are scanned exactly. From ``IVF_MIN_TILES`` tiles the store is an inverted file
(Jegou et al., "Product quantization for nearest neighbor search", TPAMI 2011, section on IVF;
the coarse quantiser of FAISS): spherical k-means centroids (about sqrt(tiles) lists) and the
rows grouped by nearest centroid, so a query scans only the ``probes`` lists nearest to it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import EngineError
from engine.output_files import is_stale_partial, partial_path, write_failed

INDEX_VERSION = 2  # 2: the manifest names its store generation
MANIFEST = "manifest.json"
FILE_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")  # entry ids (cache keys) and store generations: parts of file names
IVF_MIN_TILES = 50_000  # below this an exact scan takes a few ms
DEFAULT_PROBES = 64  # 10^6 synthetic tiles: recall@10 0.79 at 16, 0.86 at 24, 0.97 at 64 (6 ms)
KMEANS_SAMPLE = 64  # training points per list
KMEANS_ITERATIONS = 12
CHUNK = 65_536  # rows per block when assigning or scanning


def file_stamp(path: str | Path) -> list:
    """What identifies a file's content cheaply: resolved path, size, modification time (ns)."""
    resolved = Path(path).resolve()
    try:
        status = resolved.stat()
    except OSError:
        raise EngineError(f"{path} does not exist or cannot be read") from None
    return [str(resolved), status.st_size, status.st_mtime_ns]


def cache_key(name: str, inputs: dict[str, list[str]], model: str, tiling: dict) -> str:
    """The id of an entry: changes when any input file, the model file or the tiling changes (and
    differs between two names given to the same files, so that each entry owns its files)."""
    described = {
        "version": INDEX_VERSION,
        "name": name,
        "inputs": {role: [file_stamp(p) for p in paths] for role, paths in sorted(inputs.items())},
        "model": file_stamp(model),
        "tiling": tiling,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class Entry:
    """One indexed layer (or pair of layers, for change search) on its own tile grid."""

    id: str
    name: str
    kind: str  # "image" (one layer) or "change" (a before / after pair)
    inputs: dict[str, list[str]]  # role ("image", "before", "after") -> raster paths
    model: str
    model_name: str
    crs_wkt: str
    transform: list[float]  # affine a, b, c, d, e, f of the entry's grid
    tile_size: int
    stride: int
    grid_size: list[int]  # width, height in grid pixels
    tiles: int

    def tile_ring(self, row: int, col: int) -> list[tuple[float, float]]:
        """The tile's corners in the entry's CRS (top-left, top-right, bottom-right, bottom-left)."""
        a, b, c, d, e, f = self.transform
        size = self.tile_size
        corners = [(col, row), (col + size, row), (col + size, row + size), (col, row + size)]
        return [(a * x + b * y + c, d * x + e * y + f) for x, y in corners]


@dataclass
class Manifest:
    space: str
    dim: int
    entries: list[Entry] = field(default_factory=list)
    store: str = ""  # generation of the store files; empty until the first build commits

    def entry(self, name: str) -> Entry:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise EngineError(f"the index has no layer named {name!r}; it has: "
                          f"{', '.join(e.name for e in self.entries) or 'none'}")


class EmbeddingIndex:
    """An index folder: read its manifest, add entries, rebuild the store, answer queries."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.created_folder = False  # by this build: removed again if the build fails

    # ------------------------------------------------------------------ manifest
    def exists(self) -> bool:
        return (self.folder / MANIFEST).is_file()

    def manifest(self) -> Manifest:
        path = self.folder / MANIFEST
        if not path.is_file():
            raise EngineError(f"{self.folder} is not a search index (no {MANIFEST}); build one first "
                              "with build_search_index (Toolbox: Build search index)")
        try:
            data = json.loads(path.read_text())
            if data.get("version") != INDEX_VERSION:
                raise EngineError(f"index {self.folder} has format version {data.get('version')}; this toolbox "
                                  f"reads version {INDEX_VERSION}: build the index again into a new folder")
            manifest = Manifest(data["space"], data["dim"], [Entry(**e) for e in data["entries"]], data["store"])
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise EngineError(f"index manifest {path} is damaged ({err}); delete the folder and build it "
                              "again") from None
        keys = [("the store generation", manifest.store)] + [(f"the id of entry {e.name!r}", e.id)
                                                             for e in manifest.entries]
        for what, key in keys:
            if not isinstance(key, str) or not FILE_KEY.fullmatch(key):
                raise EngineError(
                    f"index manifest {path} is damaged: {what} is {key!r}, not a plain name (letters, digits, - and "
                    "_). The index names its files by such keys only, never by paths: delete the folder and build "
                    "the index again"
                )
        return manifest

    def open_for(self, space: str, dim: int) -> Manifest:
        """The manifest to add entries of embedding ``space`` to (a new one for a new folder)."""
        if self.folder.exists() and not self.folder.is_dir():
            raise EngineError(f"index path {self.folder} is a file; give a folder for the index")
        if not self.exists():
            if self.folder.is_dir() and any(self.folder.iterdir()):
                raise EngineError(f"{self.folder} is not empty and holds no search index; choose an empty or "
                                  "new folder for the index")
            if not self.folder.parent.is_dir():
                raise EngineError(f"folder {self.folder.parent} does not exist; create it or choose another index path")
            return Manifest(space, dim)
        manifest = self.manifest()
        if (manifest.space, manifest.dim) != (space, dim):
            raise EngineError(
                f"index {self.folder} holds embeddings of space {manifest.space!r} (dim {manifest.dim}); the "
                f"model gives space {space!r} (dim {dim}). Embeddings of different spaces cannot be "
                "ranked together: use another index folder for this model"
            )
        return manifest

    def save(self, manifest: Manifest) -> None:
        """Commit a build: a new store generation, then the manifest naming it (the one atomic step),
        then delete the files no entry or store uses any more."""
        self._make_folder()
        previous_store, manifest.store = manifest.store, uuid.uuid4().hex[:12]
        try:
            self._write_store(manifest)
            data = {"version": INDEX_VERSION, "space": manifest.space, "dim": manifest.dim, "store": manifest.store,
                    "entries": [asdict(e) for e in manifest.entries]}
            self._replace(MANIFEST, lambda path: path.write_text(json.dumps(data, indent=1)))
        except BaseException:
            for name in store_files(manifest.store).values():
                (self.folder / name).unlink(missing_ok=True)
            manifest.store = previous_store
            raise
        used = {MANIFEST, *store_files(manifest.store).values()}
        used |= {f"{e.id}.{part}.npy" for e in manifest.entries for part in ("embeddings", "tiles")}
        for path in self.folder.iterdir():
            if (path.name not in used and path.suffix in (".npy", ".npz")) or is_stale_partial(path):
                path.unlink(missing_ok=True)

    def write_entry(self, entry: Entry, embeddings: np.ndarray, tiles: np.ndarray) -> None:
        self._make_folder()
        self._replace(f"{entry.id}.embeddings.npy", lambda path: _save(path, embeddings.astype(np.float16)))
        self._replace(f"{entry.id}.tiles.npy", lambda path: _save(path, tiles.astype(np.int32)))

    def discard(self, entry_ids: list[str]) -> None:
        """Delete the files of entries written by a build that did not finish (never in the manifest),
        and the index folder when this build created it."""
        for entry_id in entry_ids:
            for part in ("embeddings", "tiles"):
                (self.folder / f"{entry_id}.{part}.npy").unlink(missing_ok=True)
        if self.created_folder and self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()

    def _make_folder(self) -> None:
        if not self.folder.exists():
            try:
                self.folder.mkdir()
            except OSError as err:
                raise write_failed(self.folder, err) from None
            self.created_folder = True

    def entry_embeddings(self, entry: Entry) -> np.ndarray:
        return np.load(self.folder / f"{entry.id}.embeddings.npy", mmap_mode="r")

    def entry_tiles(self, entry: Entry) -> np.ndarray:
        return np.load(self.folder / f"{entry.id}.tiles.npy")

    def has_entry(self, entry_id: str) -> bool:
        return all((self.folder / f"{entry_id}.{part}.npy").is_file() for part in ("embeddings", "tiles"))

    def _replace(self, name: str, write) -> None:
        partial = partial_path(self.folder / name)
        try:
            write(partial)
            os.replace(partial, self.folder / name)
        except OSError as err:
            raise write_failed(self.folder / name, err) from None
        finally:
            partial.unlink(missing_ok=True)

    # ------------------------------------------------------------------ store
    def _write_store(self, manifest: Manifest) -> None:
        parts = [np.asarray(self.entry_embeddings(e), np.float32) for e in manifest.entries]
        rows = np.concatenate([
            np.stack([np.full(e.tiles, k, np.int64), np.arange(e.tiles, dtype=np.int64)], axis=1)
            for k, e in enumerate(manifest.entries)
        ] or [np.zeros((0, 2), np.int64)])
        vectors = np.concatenate(parts) if parts else np.zeros((0, manifest.dim), np.float32)
        centroids, offsets = np.zeros((0, manifest.dim), np.float32), np.array([0, len(vectors)])
        if len(vectors) >= IVF_MIN_TILES:
            centroids, lists = train_lists(vectors, list_count(len(vectors)))
            order = np.argsort(lists, kind="stable")
            vectors, rows = vectors[order], rows[order]
            offsets = np.searchsorted(lists[order], np.arange(len(centroids) + 1))
        names = store_files(manifest.store)
        self._replace(names["vectors"], lambda path: _save(path, vectors))
        self._replace(names["rows"], lambda path: _save(path, rows))
        self._replace(names["lists"], lambda path: _save_npz(path, centroids=centroids, offsets=offsets))


def store_files(generation: str) -> dict[str, str]:
    """The file names of one store generation."""
    return {"vectors": f"store-{generation}.npy", "rows": f"store-{generation}.rows.npy",
            "lists": f"store-{generation}.lists.npz"}


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array)


def _save_npz(path: Path, **arrays) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def list_count(tiles: int) -> int:
    return int(max(1, round(np.sqrt(tiles))))


def train_lists(vectors: np.ndarray, lists: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means on a sample, then every vector's nearest centroid: (centroids, list ids)."""
    rng = np.random.default_rng(seed)
    sample_size = min(len(vectors), lists * KMEANS_SAMPLE)
    sample = vectors[np.sort(rng.choice(len(vectors), sample_size, replace=False))]
    centroids = sample[rng.choice(sample_size, lists, replace=False)].copy()
    for _ in range(KMEANS_ITERATIONS):
        nearest = np.argmax(sample @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, nearest, sample)
        empty = np.bincount(nearest, minlength=lists) == 0
        sums[empty] = sample[rng.choice(sample_size, int(empty.sum()))]  # restart empty lists
        centroids = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    assignment = np.concatenate([
        np.argmax(vectors[start:start + CHUNK] @ centroids.T, axis=1)
        for start in range(0, len(vectors), CHUNK)
    ])
    return centroids, assignment


@dataclass
class Hit:
    entry: Entry
    tile: int  # index in the entry
    row: int
    col: int
    score: float


class LoadedStore:
    """The store of one index, memory-mapped once per process and reused while it is unchanged."""

    def __init__(self, index: EmbeddingIndex):
        self.index = index
        self.manifest = index.manifest()
        names = store_files(self.manifest.store)
        self.vectors = np.load(index.folder / names["vectors"], mmap_mode="r")
        self.rows = np.load(index.folder / names["rows"], mmap_mode="r")
        lists = np.load(index.folder / names["lists"])
        self.centroids, self.offsets = lists["centroids"], lists["offsets"]
        self._tiles: dict[str, np.ndarray] = {}

    def tiles(self, entry: Entry) -> np.ndarray:
        if entry.id not in self._tiles:
            self._tiles[entry.id] = self.index.entry_tiles(entry)
        return self._tiles[entry.id]

    def search(self, query: np.ndarray, top_k: int, names: set[str], probes: int = DEFAULT_PROBES,
               exact: bool = False, exclude: tuple[str, int] | None = None) -> list[Hit]:
        """The ``top_k`` best tiles of the entries named in ``names`` for a unit query vector [dim]."""
        query = np.asarray(query, np.float32).reshape(-1)
        if query.shape[0] != self.manifest.dim:
            raise EngineError(f"query embedding has {query.shape[0]} values; the index stores {self.manifest.dim}")
        allowed = np.array([e.name in names for e in self.manifest.entries] + [False])
        if exact or not len(self.centroids):
            candidates = [(0, len(self.vectors))]
        else:
            candidates = self._nearest_lists(query, probes)
        scores, rows = [], []
        for start, stop in candidates:
            for block in range(start, stop, CHUNK):
                end = min(stop, block + CHUNK)
                scores.append(self.vectors[block:end] @ query)
                rows.append(np.arange(block, end))
        scores = np.concatenate(scores) if scores else np.zeros(0, np.float32)
        rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        owners = np.asarray(self.rows[rows]) if len(rows) else np.zeros((0, 2), np.int64)
        keep = allowed[owners[:, 0]] if len(owners) else np.zeros(0, bool)
        if exclude is not None:
            excluded = next(k for k, e in enumerate(self.manifest.entries) if e.name == exclude[0])
            keep &= ~((owners[:, 0] == excluded) & (owners[:, 1] == exclude[1]))
        scores, owners = scores[keep], owners[keep]
        best = np.argpartition(-scores, top_k)[:top_k] if len(scores) > top_k else np.arange(len(scores))
        best = best[np.argsort(-scores[best], kind="stable")]
        hits = []
        for position in best:
            entry = self.manifest.entries[int(owners[position, 0])]
            tile = int(owners[position, 1])
            row, col = (int(v) for v in self.tiles(entry)[tile])
            hits.append(Hit(entry, tile, row, col, float(scores[position])))
        return hits

    def _nearest_lists(self, query: np.ndarray, probes: int) -> list[tuple[int, int]]:
        """Row ranges of the lists nearest to ``query``, up to the rows ``probes`` average lists hold:
        k-means lists of clustered embeddings differ in size by 20x, and a query near the largest
        would otherwise scan far more rows than one elsewhere."""
        budget = probes * self.offsets[-1] / len(self.centroids)
        ranges, scanned = [], 0
        for k in np.argsort(-(self.centroids @ query)):
            if ranges and scanned + self.offsets[k + 1] - self.offsets[k] > budget:
                break
            ranges.append((int(self.offsets[k]), int(self.offsets[k + 1])))
            scanned += ranges[-1][1] - ranges[-1][0]
        return ranges

    def embedding(self, entry: Entry, tile: int) -> np.ndarray:
        if not 0 <= tile < entry.tiles:
            raise EngineError(f"layer {entry.name!r} has tiles 0 to {entry.tiles - 1}; tile {tile} does not exist")
        return np.asarray(self.index.entry_embeddings(entry)[tile], np.float32)


_LOADED: dict[str, tuple[int, LoadedStore]] = {}


def load_store(folder: str | Path) -> LoadedStore:
    """The index's store, reused across requests of one worker while its manifest is unchanged."""
    index = EmbeddingIndex(folder)
    manifest_path = index.folder / MANIFEST
    if not manifest_path.is_file():
        index.manifest()  # raises the explanatory error
    stamp = manifest_path.stat().st_mtime_ns
    key = str(index.folder.resolve())
    if key not in _LOADED or _LOADED[key][0] != stamp:
        _LOADED[key] = (stamp, LoadedStore(index))
    return _LOADED[key][1]
