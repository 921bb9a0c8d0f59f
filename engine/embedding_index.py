"""The on-disk search index: tile positions of raster layers, their embeddings in one FAISS index, and the query.

An index is a folder::

    manifest.json              version, embedding space and dim, the store generation, one entry per indexed
                               layer (in store order)
    <entry id>.tiles.npy       int32 [tiles, 2]: (row, col) of each tile's top-left pixel in the entry's grid
    store-<g>.faiss            every entry's embeddings in one FAISS index; a vector's FAISS id is its row in
                               manifest order (entry after entry); a new generation <g> whenever the entries change
    store-<g>.vectors.faiss    only beside an IVF-PQ store: the float16 vectors its candidates are re-ranked by

Each vector is stored once, at float16 (the precision the per-layer cache had before FAISS): in the store,
or beside an IVF-PQ store in its re-rank file, whose PQ codes are compressed candidates, not a copy.
A newly embedded layer waits in ``<entry id>.embeddings.npy`` (float16 [tiles, dim], L2-normalised)
until its build commits; the commit moves the vectors into the store and deletes that file.

An entry's id IS its cache key: a hash of the layer's name, its files (resolved path, size, modification
time), the model file (path, size, modification time) and the tiling (tile size, stride, band
mapping, extent, validity threshold). Indexing an unchanged layer again finds its id in the
manifest and reuses it without running a model: its vectors are read back from the store (exactly:
FAISS reconstructs float16 codes bit for bit). A changed layer gets a new id, and the entry of the
same name is replaced. Every file is written under a temporary name and renamed (engine/output_files.py),
and a build commits by replacing the manifest, which names the store generation it uses: a
cancelled or failed build (a full disk, a killed process) leaves the previous index exactly as it
was, and deletes its own files (and the index folder, when the build created it).

Search ranks tiles by the inner product (cosine: every vector is L2-normalised) with a query, through
FAISS (Johnson, Douze and Jegou, "Billion-scale similarity search with GPUs", IEEE Trans. Big Data
2019; Douze et al., "The Faiss library", arXiv:2401.08281, 2024), in one of three stores chosen by
the number of vectors:

- below ``IVF_MIN_TILES``: a flat index, scanned exactly (a few ms);
- below ``PQ_MIN_TILES``: IVF-Flat (an inverted file whose lists hold each vector uncompressed, at
  float16: ``IndexIVFScalarQuantizer`` with ``QT_fp16``, half the bytes of float32 and as fast),
  memory-mapped from disk (``IO_FLAG_MMAP``), sqrt(vectors) lists of which a query scans the nearest
  ``probes`` (by default ``PROBE_SHARE`` of them);
- from ``PQ_MIN_TILES``: IVF-PQ whose best ``RERANK_FACTOR`` x top_k candidates are re-ranked exactly
  against the float16 vectors, memory-mapped from disk (``IO_FLAG_MMAP_IFC``; Jegou et al., "Product
  quantization for nearest neighbor search", TPAMI 2011: IVFADC with re-ranking). Its PQ codes are
  4-bit, one per 2 dimensions (``dim / 4`` bytes a vector, 1/8 of the float16 vectors), scanned with
  FAISS's SIMD fast scan (André et al., "Quicker ADC", TPAMI 2021), and held in RAM: FAISS
  memory-maps only 8-bit PQ lists, which on 2 x 10^6 of bench/search.py's vectors took 5x longer per
  query (12 against 2.5 ms at recall@10 0.98) and 6x longer to build.

A build that only adds layers to an IVF-Flat store keeps its trained lists: the previous store is read
into memory, the new layers' vectors are added to it, and it is written as the next generation, in
about the time of reading and writing it (no k-means, no second assignment of the stored vectors).
The lists are trained again from all vectors when a layer is replaced or removed, when the number of
lists leaves ``APPEND_LIST_RANGE`` of sqrt(vectors), when the store would become IVF-PQ, or when the
kept lists' recall@10 falls below ``APPEND_MIN_RECALL`` (new layers unlike those the lists were
trained on). The build's report says which (``lists_kept``).

A build reports the approximate store's recall@10 against the exact scan, measured with
``RECALL_QUERIES`` stored vectors as queries (each one's own tile left out). With faiss-gpu and a
GPU, the k-means that trains the inverted lists runs on the GPU. FAISS is imported only here, when an
index is built or searched (design.md: nothing in engine/ imports it at module load).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import EngineError
from engine.output_files import OutputWriteError, is_stale_partial, partial_path, write_failed

INDEX_VERSION = 3  # 3: embeddings in a FAISS store, none in the per-layer files
MIGRATED_VERSION = 2  # the numpy store before FAISS: its layers' float16 embeddings move into a FAISS store
CACHE_KEY_VERSION = 2  # what an entry id describes; unchanged by version 3 (a layer indexed before is reused)
MANIFEST = "manifest.json"
FILE_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")  # entry ids (cache keys) and store generations: parts of file names
IVF_MIN_TILES = 50_000  # below this an exact scan takes a few ms
PQ_MIN_TILES = 10_000_000  # from here IVF-Flat would scan 768 MB of float16 lists a query (384-dim)
PROBE_SHARE = 1 / 10  # of the lists a query scans by default: 10^6 vectors, text queries: recall@10 0.97 in 7 ms
TRAIN_PER_LIST = 39  # k-means training vectors per list (FAISS warns below 39)
KMEANS_ITERATIONS = 10
RERANK_FACTOR = 100  # IVF-PQ candidates per result re-ranked exactly: recall@10 0.90 at 20, 0.98 at 100 (2 x 10^6)
RECALL_QUERIES = 100
CHUNK = 65_536  # vectors per block when a store is filled or read back
APPEND_LIST_RANGE = 2.0  # an IVF-Flat store's lists are kept for more vectors while within this factor of sqrt(vectors)
APPEND_MIN_RECALL = 0.95  # ... and while its recall@10 stays at least this; else the lists are trained again


def faiss_module():
    """FAISS, imported on first use (faiss-gpu where installed, else faiss-cpu). Its OpenMP threads sleep
    while they wait, unless OMP_WAIT_POLICY says otherwise: spinning, they made the k-means of an IVF-PQ
    store 4x slower on a loaded 2-core machine (71 s against 17 s), and queries no faster."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when OpenMP starts: before the import
    try:
        import faiss
    except ImportError:
        raise EngineError("text search needs FAISS, which is not installed in the engine's Python: run "
                          "scripts/setup.sh, or pip install faiss-cpu") from None
    return faiss


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
        "version": CACHE_KEY_VERSION,
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
    """An index folder: read its manifest, add entries, rebuild the store."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.created_folder = False  # by this build: removed again if the build fails
        self.migration: str | None = None  # what open_for did to an index of format 2

    # ------------------------------------------------------------------ manifest
    def exists(self) -> bool:
        return (self.folder / MANIFEST).is_file()

    def manifest(self, version: int = INDEX_VERSION) -> Manifest:
        """The manifest, of format ``version`` (the current one unless migrating)."""
        path = self.folder / MANIFEST
        if not path.is_file():
            raise EngineError(f"{self.folder} is not a search index (no {MANIFEST}); build one first "
                              "with build_search_index (Toolbox: Build search index)")
        try:
            data = json.loads(path.read_text())
            if data.get("version") != version:
                raise EngineError(f"index {self.folder} has format version {data.get('version')}; this toolbox "
                                  f"reads version {INDEX_VERSION} (and migrates version {MIGRATED_VERSION}): build "
                                  "the index again into a new folder")
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

    def stored_version(self) -> object:
        """The format version the manifest declares (None when unreadable: ``manifest()`` names the damage)."""
        try:
            return json.loads((self.folder / MANIFEST).read_text()).get("version")
        except (OSError, ValueError, AttributeError):
            return None

    def migrate(self) -> str | None:
        """Move an index of format 2 (a numpy store, every layer's float16 embeddings in its own file) into
        a FAISS store, without running a model. Returns what was done, or None when there was nothing to do."""
        if not self.exists() or self.stored_version() != MIGRATED_VERSION:
            return None
        started = time.perf_counter()
        manifest = self.manifest(MIGRATED_VERSION)
        missing = [e.name for e in manifest.entries if not self.pending_path(e.id).is_file()]
        if missing:
            raise EngineError(f"index {self.folder} (format {MIGRATED_VERSION}) lacks the embeddings of "
                              f"{', '.join(missing)}; it cannot be migrated: build the index again into a new folder")
        try:
            self.save(manifest)
        except OutputWriteError as err:
            raise OutputWriteError(f"index {self.folder} is in format {MIGRATED_VERSION} of earlier versions and must "
                                   f"be moved into a FAISS store (format {INDEX_VERSION}) before use, which failed: "
                                   f"{err}") from None
        return (f"index {self.folder} was in format {MIGRATED_VERSION} (the numpy store of earlier versions): its "
                f"{len(manifest.entries)} layer(s) were moved into a FAISS store (format {INDEX_VERSION}) from their "
                f"saved embeddings in {time.perf_counter() - started:.1f} s, without running a model")

    def open_for(self, space: str, dim: int) -> Manifest:
        """The manifest to add entries of embedding ``space`` to (a new one for a new folder); an index of
        format 2 is migrated first (``self.migration`` says so)."""
        if self.folder.exists() and not self.folder.is_dir():
            raise EngineError(f"index path {self.folder} is a file; give a folder for the index")
        if not self.exists():
            if self.folder.is_dir() and any(self.folder.iterdir()):
                raise EngineError(f"{self.folder} is not empty and holds no search index; choose an empty or "
                                  "new folder for the index")
            if not self.folder.parent.is_dir():
                raise EngineError(f"folder {self.folder.parent} does not exist; create it or choose another index path")
            return Manifest(space, dim)
        self.migration = self.migrate()
        manifest = self.manifest()
        if (manifest.space, manifest.dim) != (space, dim):
            raise EngineError(
                f"index {self.folder} holds embeddings of space {manifest.space!r} (dim {manifest.dim}); the "
                f"model gives space {space!r} (dim {dim}). Embeddings of different spaces cannot be "
                "ranked together: use another index folder for this model"
            )
        return manifest

    def save(self, manifest: Manifest) -> dict:
        """Commit a build: a new store generation, then the manifest naming it (the one atomic step),
        then delete the files no entry or store uses any more. Returns how the store was built."""
        self._make_folder()
        previous_store, manifest.store = manifest.store, uuid.uuid4().hex[:12]
        names = store_files(manifest.store)
        try:
            started = time.perf_counter()
            source = StoredVectors(self, manifest)
            store = FaissStore.extended(self.folder, source)
            recall = store.recall_at_10() if store else None
            if store is None or recall < APPEND_MIN_RECALL:
                store = FaissStore.build(manifest.dim, source)
                recall = store.recall_at_10()
            report = {**store.describe(), "recall_at_10": recall, "recall_queries": RECALL_QUERIES,
                      "lists_kept": store.lists_kept}
            store.write(self.folder, manifest.store, self._replace)
            report["seconds"] = round(time.perf_counter() - started, 3)
            data = {"version": INDEX_VERSION, "space": manifest.space, "dim": manifest.dim, "store": manifest.store,
                    "entries": [asdict(e) for e in manifest.entries]}
            self._replace(MANIFEST, lambda path: path.write_text(json.dumps(data, indent=1)))
        except BaseException:
            for name in names:
                (self.folder / name).unlink(missing_ok=True)
            manifest.store = previous_store
            raise
        used = {MANIFEST, *names, *(f"{e.id}.tiles.npy" for e in manifest.entries)}
        for path in self.folder.iterdir():
            if (path.name not in used and path.suffix in (".npy", ".npz", ".faiss")) or is_stale_partial(path):
                path.unlink(missing_ok=True)
        return report

    def write_entry(self, entry: Entry, embeddings: np.ndarray, tiles: np.ndarray) -> None:
        """A newly embedded layer: its tile positions, and its embeddings until the build commits them to the store."""
        self._make_folder()
        self._replace(self.pending_path(entry.id).name, lambda path: _save(path, np.asarray(embeddings, np.float16)))
        self._replace(f"{entry.id}.tiles.npy", lambda path: _save(path, tiles.astype(np.int32)))

    def discard(self, entry_ids: list[str]) -> None:
        """Delete the files of entries written by a build that did not finish (never in the manifest),
        and the index folder when this build created it."""
        for entry_id in entry_ids:
            self.pending_path(entry_id).unlink(missing_ok=True)
            (self.folder / f"{entry_id}.tiles.npy").unlink(missing_ok=True)
        if self.created_folder and self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()

    def _make_folder(self) -> None:
        if not self.folder.exists():
            try:
                self.folder.mkdir()
            except OSError as err:
                raise write_failed(self.folder, err) from None
            self.created_folder = True

    def pending_path(self, entry_id: str) -> Path:
        """Where a new entry's embeddings wait for the commit (and where format 2 kept every entry's)."""
        return self.folder / f"{entry_id}.embeddings.npy"

    def entry_tiles(self, entry: Entry) -> np.ndarray:
        return np.load(self.folder / f"{entry.id}.tiles.npy")

    def has_entry(self, entry_id: str) -> bool:
        return (self.folder / f"{entry_id}.tiles.npy").is_file()

    def _replace(self, name: str, write) -> None:
        partial = partial_path(self.folder / name)
        try:
            write(partial)
            os.replace(partial, self.folder / name)
        except OSError as err:
            raise write_failed(self.folder / name, err) from None
        finally:
            partial.unlink(missing_ok=True)


def store_files(generation: str) -> tuple[str, str]:
    """The file names of one store generation: the FAISS index, and the re-rank vectors of an IVF-PQ one."""
    return f"store-{generation}.faiss", f"store-{generation}.vectors.faiss"


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array)


class StoredVectors:
    """Every entry's vectors for a new store, in manifest order, from where they are now: a new entry's
    pending file, or the committed store (an unchanged entry, read back without running a model)."""

    def __init__(self, index: EmbeddingIndex, manifest: Manifest):
        committed = index.manifest() if index.stored_version() == INDEX_VERSION else None
        self.previous = FaissStore.read(index.folder, committed.store) if committed else None
        self.previous_generation = committed.store if committed else None
        previous_start = {e.id: int(start) for e, start in zip(committed.entries, entry_offsets(committed.entries))} \
            if committed else {}
        self.parts: list[np.ndarray | int] = []  # per entry: its pending float16 vectors, or its first id in the store
        for entry in manifest.entries:
            pending = index.pending_path(entry.id)
            if pending.is_file():
                self.parts.append(np.load(pending, mmap_mode="r"))
            elif entry.id in previous_start:
                self.parts.append(previous_start[entry.id])
            else:
                raise EngineError(f"index {index.folder} lacks the embeddings of layer {entry.name!r} (damaged); "
                                  "delete the folder and build the index again")
        self.offsets = entry_offsets(manifest.entries)
        self.total = int(self.offsets[-1])
        kept = len(committed.entries) if committed else 0
        # the store's entries, in its order and at its rows, then only new ones: a store the new vectors can extend
        self.appends = (0 < kept < len(self.parts)
                        and all(isinstance(part, int) and part == row for part, row in zip(self.parts, self.offsets[:kept]))
                        and not any(isinstance(part, int) for part in self.parts[kept:]))
        self.new_from = kept

    def _read(self, entry: int, rows: np.ndarray | slice) -> np.ndarray:
        """float32 vectors of one entry's ``rows`` (numbered within the entry)."""
        part = self.parts[entry]
        if isinstance(part, int):
            if isinstance(rows, slice):
                return self.previous.reconstruct(part + rows.start, rows.stop - rows.start)
            return self.previous.reconstruct_rows(part + rows)
        return np.asarray(part[rows], np.float32)

    def blocks(self, first_entry: int = 0):
        """All vectors in store order (from ``first_entry`` on), at most ``CHUNK`` rows at a time."""
        for entry, tiles in enumerate(np.diff(self.offsets)[first_entry:], start=first_entry):
            for start in range(0, int(tiles), CHUNK):
                yield self._read(entry, slice(start, min(int(tiles), start + CHUNK)))

    def sample(self, count: int, seed: int = 0) -> np.ndarray:
        """``count`` vectors drawn at random (the k-means training set)."""
        rows = np.sort(np.random.default_rng(seed).choice(self.total, min(count, self.total), replace=False))
        owners = np.searchsorted(self.offsets, rows, side="right") - 1
        return np.concatenate([self._read(int(k), rows[owners == k] - self.offsets[k]) for k in np.unique(owners)])


def entry_offsets(entries: list[Entry]) -> np.ndarray:
    """The first store row (FAISS id) of each entry, and the total: [entries + 1]."""
    return np.concatenate([[0], np.cumsum([e.tiles for e in entries], dtype=np.int64)])


def list_count(vectors: int) -> int:
    """sqrt(vectors) inverted lists (1000 at 10^6). Twice as many built in twice the time (the k-means grows with
    the square of the lists) and answered as fast at equal recall on this 2-core machine (bench/search.py)."""
    return max(1, round(math.sqrt(vectors)))


def default_probes(lists: int) -> int:
    return max(1, math.ceil(lists * PROBE_SHARE))


def pq_subquantizers(dim: int) -> int:
    """One 4-bit PQ code per 2 dimensions: the largest divisor of ``dim`` up to dim / 2."""
    return next(m for m in range(max(1, dim // 2), 0, -1) if dim % m == 0)


class FaissStore:
    """One store generation: a FAISS index (flat, IVF-Flat at float16, or IVF-PQ with its float16 re-rank
    vectors), built from vectors, written, read back memory-mapped, searched, and read back as vectors."""

    def __init__(self, main, vectors=None):
        faiss = faiss_module()
        self.main, self.vectors = main, vectors  # vectors: an IVF-PQ store's re-rank index, else None
        self.searched = faiss.IndexRefine(main, vectors) if vectors is not None else main
        self.ivf = faiss.try_extract_index_ivf(main)
        self.kind = "flat" if self.ivf is None else "ivf-pq" if vectors is not None else "ivf-flat"
        self.lists_kept = False  # built on the lists of the previous store (``extended``)

    @classmethod
    def build(cls, dim: int, source: StoredVectors) -> FaissStore:
        faiss = faiss_module()
        fp16, inner_product = faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        if source.total < IVF_MIN_TILES:
            main, vectors = faiss.IndexScalarQuantizer(dim, fp16, inner_product), None
        else:
            lists = list_count(source.total)
            if source.total < PQ_MIN_TILES:
                main = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, lists, fp16, inner_product)
                main.by_residual = False  # the vectors themselves at float16, read back exactly (not list residuals)
                vectors = None
            else:
                main = faiss.IndexIVFPQFastScan(faiss.IndexFlatIP(dim), dim, lists, pq_subquantizers(dim), 4,
                                                inner_product)
                main.pq.cp.niter = KMEANS_ITERATIONS
                vectors = faiss.IndexScalarQuantizer(dim, fp16, inner_product)
            main.cp.niter = KMEANS_ITERATIONS
            if faiss.get_num_gpus() > 0:  # faiss-gpu: the k-means of the lists runs on the GPU
                on_gpu = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(dim))  # alive until this function returns
                main.clustering_index = on_gpu
            main.train(source.sample(TRAIN_PER_LIST * lists))
            main.clustering_index = None
        for block in source.blocks():
            main.add(block)
            if vectors is not None:
                vectors.add(block)
        if vectors is None and source.total >= IVF_MIN_TILES:
            main.make_direct_map()  # reconstruct(id): a stored tile's vector, an unchanged entry's at rebuilds
        return cls(main, vectors)

    @classmethod
    def extended(cls, folder: Path, source: StoredVectors) -> FaissStore | None:
        """The previous IVF-Flat store, read into memory, with the new entries' vectors added on its
        trained lists; None where ``source`` does not only append entries, or the store's lists do not
        suit the new total (module docstring)."""
        previous = source.previous
        if not source.appends or previous.kind != "ivf-flat" or source.total >= PQ_MIN_TILES or not (
                1 / APPEND_LIST_RANGE <= previous.lists / list_count(source.total) <= APPEND_LIST_RANGE):
            return None
        faiss = faiss_module()
        main = faiss.read_index(str(folder / store_files(source.previous_generation)[0]))
        for block in source.blocks(source.new_from):
            main.add(block)
        store = cls(main)
        store.lists_kept = True
        return store

    @classmethod
    def read(cls, folder: Path, generation: str) -> FaissStore:
        """The store of ``generation``, its IVF-Flat lists and re-rank vectors memory-mapped."""
        faiss = faiss_module()
        main_name, vectors_name = store_files(generation)
        try:
            main = faiss.read_index(str(folder / main_name), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            vectors = None
            if isinstance(main, faiss.IndexIVFPQFastScan):
                vectors = faiss.read_index(str(folder / vectors_name), faiss.IO_FLAG_MMAP_IFC)
        except RuntimeError as err:
            raise EngineError(f"the store of index {folder} cannot be read ({str(err).splitlines()[-1]}); delete "
                              "the folder and build the index again") from None
        return cls(main, vectors)

    def write(self, folder: Path, generation: str, replace) -> None:
        """Write the store's files through ``replace(name, write)`` (temporary name, renamed when complete)."""
        faiss = faiss_module()

        def writer(index):
            def write(path: Path) -> None:
                with open(path, "wb") as handle:  # Python's file: a full disk raises OSError, even at close
                    faiss.write_index(index, faiss.PyCallbackIOWriter(handle.write))
            return write

        main_name, vectors_name = store_files(generation)
        replace(main_name, writer(self.main))
        if self.vectors is not None:
            replace(vectors_name, writer(self.vectors))

    @property
    def lists(self) -> int | None:
        return self.ivf.nlist if self.ivf is not None else None

    def describe(self) -> dict:
        return {"kind": self.kind, "vectors": int(self.main.ntotal), "lists": self.lists,
                "probes": default_probes(self.lists) if self.lists else None}

    def search(self, queries: np.ndarray, k: int, probes: int | None = None, exact: bool = False,
               selector=None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) [queries, k] of the ``k`` best vectors among those ``selector`` admits (all when
        None); ``exact`` scans every vector. Missing results (fewer admitted vectors) have id -1."""
        faiss = faiss_module()
        if self.ivf is None or exact and self.vectors is not None:  # a scan of every (float16) vector
            return self._holder().search(queries, k, params=faiss.SearchParameters(sel=selector))
        lists = self.ivf.nlist if exact else min(self.ivf.nlist, probes or default_probes(self.ivf.nlist))
        parameters = faiss.SearchParametersIVF(nprobe=lists, sel=selector)
        if self.vectors is not None:
            parameters = faiss.IndexRefineSearchParameters(k_factor=RERANK_FACTOR, base_index_params=parameters)
        return self.searched.search(queries, k, params=parameters)

    def reconstruct(self, start: int, count: int) -> np.ndarray:
        """float32 vectors of ids [start, start + count): the stored float16 values, exactly."""
        return self._holder().reconstruct_n(start, count)

    def reconstruct_rows(self, ids: np.ndarray) -> np.ndarray:
        """float32 vectors of ``ids``."""
        return self._holder().reconstruct_batch(np.ascontiguousarray(ids, np.int64))

    def _holder(self):
        """The index holding the vectors themselves (an IVF-PQ store's PQ codes are approximations)."""
        return self.vectors if self.vectors is not None else self.main

    def recall_at_10(self, queries: int = RECALL_QUERIES, seed: int = 0) -> float | None:
        """Recall@10 of the default search against the exact scan, with stored vectors as queries (each
        one's own id left out); a result tied with the exact 10th best counts as found. None for a flat store."""
        if self.ivf is None:
            return None
        total = int(self.main.ntotal)
        ids = np.sort(np.random.default_rng(seed).choice(total, min(queries, total), replace=False))
        vectors = self.reconstruct_rows(ids)
        found_scores, found = self.search(vectors, 11)
        exact_scores, exact = self.search(vectors, 11, exact=True)
        recalls = []
        for own, scores, rows, truth_scores, truth in zip(ids, found_scores, found, exact_scores, exact):
            tenth = truth_scores[truth != own][:10][-1]
            kept = (rows != own) & (rows >= 0)
            recalls.append(min(10, int((scores[kept][:10] >= tenth - 1e-6).sum())) / 10)
        return round(float(np.mean(recalls)), 4)


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
        self.store = FaissStore.read(index.folder, self.manifest.store)
        self.offsets = entry_offsets(self.manifest.entries)
        self.migration: str | None = None  # set by the load that migrated the index; reported once
        self._tiles: dict[str, np.ndarray] = {}
        self._selectors: dict[tuple[int, ...], tuple] = {}

    @property
    def approximate(self) -> bool:
        return self.store.ivf is not None

    def take_migration(self) -> str | None:
        """What the migration this load did says, once: the request that caused it reports it."""
        message, self.migration = self.migration, None
        return message

    def tiles(self, entry: Entry) -> np.ndarray:
        if entry.id not in self._tiles:
            self._tiles[entry.id] = self.index.entry_tiles(entry)
        return self._tiles[entry.id]

    def scans_exactly(self, names: set[str], exact: bool) -> bool:
        """Whether a search of the entries named ``names`` scans every one of their vectors: asked to, a
        flat store, or too few vectors for lists to pay (and for probed lists to hold enough of them)."""
        searched = sum(e.tiles for e in self.manifest.entries if e.name in names)
        return exact or not self.approximate or searched < IVF_MIN_TILES

    def search(self, query: np.ndarray, top_k: int, names: set[str], probes: int | None = None,
               exact: bool = False, exclude: tuple[str, int] | None = None) -> list[Hit]:
        """The ``top_k`` best tiles of the entries named in ``names`` for a unit query vector [dim]."""
        query = np.ascontiguousarray(query, np.float32).reshape(1, -1)
        if query.shape[1] != self.manifest.dim:
            raise EngineError(f"query embedding has {query.shape[1]} values; the index stores {self.manifest.dim}")
        allowed = tuple(k for k, e in enumerate(self.manifest.entries) if e.name in names)
        wanted = min(top_k + (exclude is not None), sum(self.manifest.entries[k].tiles for k in allowed))
        if wanted == 0:
            return []
        selector = self._selector(allowed)
        exact = self.scans_exactly(names, exact)
        scores, ids = self.store.search(query, wanted, probes, exact, selector)
        if not exact and (ids[0] < 0).any():  # the probed lists held fewer of the named entries' tiles
            scores, ids = self.store.search(query, wanted, probes, True, selector)
        hits = []
        for score, row in zip(scores[0], ids[0]):
            if row < 0:
                continue
            number = int(np.searchsorted(self.offsets, row, side="right")) - 1
            entry, tile = self.manifest.entries[number], int(row - self.offsets[number])
            if exclude == (entry.name, tile):
                continue
            position_row, position_col = (int(v) for v in self.tiles(entry)[tile])
            hits.append(Hit(entry, tile, position_row, position_col, float(score)))
        return hits[:top_k]

    def _selector(self, allowed: tuple[int, ...]):
        """FAISS's filter for the ids of the ``allowed`` entries (None: all), kept with its bitmap."""
        if len(allowed) == len(self.manifest.entries):
            return None
        if allowed not in self._selectors:
            mask = np.zeros(int(self.offsets[-1]), bool)
            for k in allowed:
                mask[self.offsets[k]:self.offsets[k + 1]] = True
            bitmap = np.packbits(mask, bitorder="little")
            faiss = faiss_module()
            self._selectors[allowed] = (faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)), bitmap)
        return self._selectors[allowed][0]

    def _start(self, entry: Entry) -> int:
        return int(self.offsets[self.manifest.entries.index(entry)])

    def embedding(self, entry: Entry, tile: int) -> np.ndarray:
        if not 0 <= tile < entry.tiles:
            raise EngineError(f"layer {entry.name!r} has tiles 0 to {entry.tiles - 1}; tile {tile} does not exist")
        return self.store.reconstruct(self._start(entry) + tile, 1)[0]

    def entry_vectors(self, entry: Entry) -> np.ndarray:
        """Every tile's vector of ``entry`` [tiles, dim] (float32 of the stored float16)."""
        return self.store.reconstruct(self._start(entry), entry.tiles)


_LOADED: dict[str, tuple[int, LoadedStore]] = {}


def load_store(folder: str | Path) -> LoadedStore:
    """The index's store, reused across requests of one worker while its manifest is unchanged; an index
    of format 2 is migrated first (``migration`` of the store returned says so)."""
    index = EmbeddingIndex(folder)
    migration = index.migrate()
    manifest_path = index.folder / MANIFEST
    if not manifest_path.is_file():
        index.manifest()  # raises the explanatory error
    stamp = manifest_path.stat().st_mtime_ns
    key = str(index.folder.resolve())
    if key not in _LOADED or _LOADED[key][0] != stamp:
        _LOADED[key] = (stamp, LoadedStore(index))
    loaded = _LOADED[key][1]
    if migration:
        loaded.migration = migration
    return loaded
