"""Text-search algorithms in real QGIS (processing.run) and qgis_process, on the Olinda Landsat 7
sample with the shipped RGB image encoder and MiniLM text encoder."""
from pathlib import Path

import numpy as np
import pytest
import rasterio
from osgeo import gdal, ogr, osr
from rasterio.windows import from_bounds

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE = REPO_ROOT / "sample_data" / "olinda_landsat7.tif"
SAMPLE_NAME = "olinda_landsat7"
SAMPLE_TILES = 121  # 11 x 11 tiles of 32 px at 30 m
TILE_M = 32 * 30.0
MODEL_PIXEL_M = 30.0  # the index grid is the scene resampled to 30 m: it may overhang by less than a pixel


@pytest.fixture(scope="module")
def sample_index(rsai_provider, tmp_path_factory):
    """The sample indexed once for the module: (index folder, the build's outputs)."""
    import processing

    index = tmp_path_factory.mktemp("search") / "index"
    result = processing.run("rsai:build_search_index", {"LAYERS": [str(SAMPLE)], "INDEX": str(index), "DEVICE": 1})
    return index, result


def ranked_tiles(path) -> list[dict]:
    """The features of a search_results GeoPackage: fields and (xmin, xmax, ymin, ymax)."""
    source = ogr.Open(str(path))
    layer = source.GetLayerByName("search_results")
    return [{**feature.items(), "envelope": feature.GetGeometryRef().GetEnvelope()} for feature in layer]


def water_share(envelope) -> float:
    """Share of the sample's pixels in a tile with near-infrared below 20 (open water)."""
    xmin, xmax, ymin, ymax = envelope
    with rasterio.open(SAMPLE) as scene:
        nir = scene.read(4, window=from_bounds(xmin, ymin, xmax, ymax, scene.transform))
    return float((nir < 20).mean())


def inside_scene(envelope) -> bool:
    xmin, xmax, ymin, ymax = envelope
    with rasterio.open(SAMPLE) as scene:
        left, bottom, right, top = scene.bounds
    return (xmin >= left - MODEL_PIXEL_M and xmax <= right + MODEL_PIXEL_M
            and ymin >= bottom - MODEL_PIXEL_M and ymax <= top + MODEL_PIXEL_M)


def test_build_indexes_the_sample_and_reuses_it_when_unchanged(rsai_provider, sample_index):
    import processing

    index, first = sample_index
    assert (first["TILES"], first["BUILT"], first["REUSED"]) == (SAMPLE_TILES, 1, 0)
    assert first["INDEX"] == str(index) and (index / "manifest.json").is_file()
    again = processing.run("rsai:build_search_index", {"LAYERS": [str(SAMPLE)], "INDEX": str(index), "DEVICE": 1})
    assert (again["TILES"], again["BUILT"], again["REUSED"]) == (SAMPLE_TILES, 0, 1)


def test_extent_tile_size_and_overlap_reach_the_index(rsai_provider, tmp_path):
    import json

    import processing

    with rasterio.open(SAMPLE) as scene:
        left, top = scene.bounds.left, scene.bounds.top
    result = processing.run("rsai:build_search_index", {
        "LAYERS": [str(SAMPLE)], "INDEX": str(tmp_path / "index"), "TILE_SIZE": 16, "OVERLAP": 8, "DEVICE": 1,
        "EXTENT": f"{left},{left + 5000},{top - 5000},{top} [EPSG:31985]"})
    (entry,) = json.loads((tmp_path / "index" / "manifest.json").read_text())["entries"]
    assert (entry["tile_size"], entry["stride"], entry["grid_size"]) == (16, 8, [166, 166])  # 5 km at 30 m: 166.7 px
    assert entry["transform"] == pytest.approx([30.0, 0.0, left, 0.0, -30.0, top])
    assert result["TILES"] == entry["tiles"] == 20 * 20  # origins every 8 px, the last at the edge


def test_layers_of_one_name_get_distinct_names_and_an_extent_needs_one_crs(rsai_provider, tmp_path):
    import json

    import processing
    from qgis.core import QgsProcessingException, QgsRasterLayer

    geographic = str(tmp_path / "olinda_wgs84.tif")
    gdal.Warp(geographic, str(SAMPLE), dstSRS="EPSG:4326")
    layers = [QgsRasterLayer(str(SAMPLE), "olinda"), QgsRasterLayer(geographic, "olinda")]
    with pytest.raises(QgsProcessingException, match="different CRSs"):
        processing.run("rsai:build_search_index", {"LAYERS": layers, "INDEX": str(tmp_path / "index"), "DEVICE": 1,
                                                   "EXTENT": "289000,290000,9119000,9120000 [EPSG:31985]"})
    result = processing.run("rsai:build_search_index", {"LAYERS": layers, "INDEX": str(tmp_path / "index"),
                                                        "DEVICE": 1})
    entries = json.loads((tmp_path / "index" / "manifest.json").read_text())["entries"]
    assert [entry["name"] for entry in entries] == ["olinda", "olinda (2)"]
    assert result["BUILT"] == 2 and result["TILES"] == sum(entry["tiles"] for entry in entries)


def test_search_text_loads_ranked_sea_tiles_styled_by_score(rsai_provider, sample_index, tmp_path):
    import processing
    from qgis.core import QgsProject

    index, _ = sample_index
    output, heatmap = tmp_path / "sea.gpkg", tmp_path / "sea_heatmap.tif"
    result = processing.runAndLoadResults("rsai:search_text", {
        "QUERY": "the sea", "INDEX": str(index), "TOP_K": 8, "OUTPUT": str(output), "HEATMAP": str(heatmap)})
    loaded = {Path(layer.source().split("|")[0]): layer for layer in QgsProject.instance().mapLayers().values()}
    try:
        layer = loaded[output]
        assert layer.isValid() and layer.featureCount() == 8
        assert layer.crs().authid() == "EPSG:31985"
        scores = [feature["score"] for feature in layer.getFeatures()]
        assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1
        assert [feature["rank"] for feature in layer.getFeatures()] == list(range(1, 9))
        renderer = layer.renderer()
        assert renderer.type() == "graduatedSymbol" and renderer.classAttribute() == "score"
        assert renderer.ranges()[0].lowerValue() == pytest.approx(min(scores), abs=1e-4)
        assert renderer.ranges()[-1].upperValue() == pytest.approx(max(scores), abs=1e-4)
        assert layer.labelsEnabled() and layer.labeling().settings().fieldName == "rank"
        assert loaded[heatmap].renderer().type() == "singlebandpseudocolor"
        assert result["OUTPUT"] == str(output) and result["HEATMAP"] == str(heatmap) and result["QUERY_MS"] > 0
    finally:
        QgsProject.instance().removeAllMapLayers()
    tiles = ranked_tiles(output)
    assert all(inside_scene(tile["envelope"]) for tile in tiles)
    assert all(tile["envelope"][1] - tile["envelope"][0] == pytest.approx(TILE_M) for tile in tiles)
    assert np.mean([water_share(tile["envelope"]) for tile in tiles[:5]]) > 0.8  # the scene: 15 % water


def test_heatmap_has_one_cell_per_tile_on_the_scene_grid(rsai_provider, sample_index, tmp_path):
    import processing

    index, _ = sample_index
    heatmap = tmp_path / "heatmap.tif"
    processing.run("rsai:search_text", {"QUERY": "a city", "INDEX": str(index), "TOP_K": 3,
                                        "OUTPUT": str(tmp_path / "city.gpkg"), "HEATMAP": str(heatmap)})
    dataset = gdal.Open(str(heatmap))
    with rasterio.open(SAMPLE) as scene:
        left, top = scene.bounds.left, scene.bounds.top
    assert (dataset.RasterXSize, dataset.RasterYSize) == (11, 11)
    assert dataset.GetGeoTransform() == pytest.approx((left, TILE_M, 0.0, top, 0.0, -TILE_M))
    assert osr.SpatialReference(wkt=dataset.GetProjection()).GetAuthorityCode(None) == "31985"
    scores = dataset.GetRasterBand(1).ReadAsArray()
    best = ranked_tiles(tmp_path / "city.gpkg")[0]
    assert scores.max() == pytest.approx(best["score"], abs=1e-4)
    assert scores[best["tile_row"] // 32, best["tile_col"] // 32] == pytest.approx(best["score"], abs=1e-4)


def test_find_similar_by_point_in_another_crs_leaves_the_query_tile_out(rsai_provider, sample_index, tmp_path):
    import processing
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsPointXY, QgsProject

    index, _ = sample_index
    processing.run("rsai:search_text", {"QUERY": "the sea", "INDEX": str(index), "TOP_K": 1,
                                        "OUTPUT": str(tmp_path / "sea.gpkg")})
    sea = ranked_tiles(tmp_path / "sea.gpkg")[0]
    xmin, xmax, ymin, ymax = sea["envelope"]
    to_wgs84 = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:31985"),
                                      QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance())
    centre = to_wgs84.transform(QgsPointXY((xmin + xmax) / 2, (ymin + ymax) / 2))
    output = tmp_path / "similar.gpkg"
    processing.run("rsai:search_similar", {
        "INDEX": str(index), "LAYER_NAME": SAMPLE_NAME, "POINT": f"{centre.x()},{centre.y()} [EPSG:4326]",
        "TOP_K": 6, "OUTPUT": str(output)})
    similar = ranked_tiles(output)
    assert len(similar) == 6 and sea["tile"] not in [tile["tile"] for tile in similar]
    assert [tile["score"] for tile in similar] == sorted((tile["score"] for tile in similar), reverse=True)
    assert np.mean([water_share(tile["envelope"]) for tile in similar]) > 0.8  # sea looks like sea

    by_number = tmp_path / "similar_by_number.gpkg"
    processing.run("rsai:search_similar", {"INDEX": str(index), "LAYER_NAME": SAMPLE_NAME, "TILE": sea["tile"],
                                           "TOP_K": 6, "OUTPUT": str(by_number)})
    assert [tile["tile"] for tile in ranked_tiles(by_number)] == [tile["tile"] for tile in similar]


def test_a_layer_that_is_not_a_file_is_rendered_then_indexed(rsai_provider, tmp_path):
    import processing
    from qgis.core import QgsRasterLayer

    gdal.FileFromMemBuffer("/vsimem/olinda.tif", SAMPLE.read_bytes())
    try:
        in_memory = QgsRasterLayer("/vsimem/olinda.tif", "olinda in memory")
        result = processing.run("rsai:build_search_index", {
            "LAYERS": [in_memory], "INDEX": str(tmp_path / "index"), "BANDS": "red=3,green=2,blue=1",
            "MODEL": str(REPO_ROOT / "models_onnx" / "search_image_rgb.onnx"), "DEVICE": 1})
    finally:
        gdal.Unlink("/vsimem/olinda.tif")
    assert (result["TILES"], result["BUILT"]) == (SAMPLE_TILES, 1)
    output = tmp_path / "sea.gpkg"
    processing.run("rsai:search_text", {"QUERY": "the sea", "INDEX": str(tmp_path / "index"), "TOP_K": 5,
                                        "OUTPUT": str(output)})
    tiles = ranked_tiles(output)
    assert {tile["layer"] for tile in tiles} == {"olinda in memory"}
    assert np.mean([water_share(tile["envelope"]) for tile in tiles]) > 0.8


def test_a_missing_index_is_refused_with_the_reason(rsai_provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    missing = tmp_path / "no_such_index"
    with pytest.raises(QgsProcessingException, match=f"{missing} is not a search index .*build one first"):
        processing.run("rsai:search_text", {"QUERY": "the sea", "INDEX": str(missing),
                                            "OUTPUT": str(tmp_path / "out.gpkg")})
    assert not (tmp_path / "out.gpkg").exists()


@pytest.mark.parametrize("query, message", [("   ", "the query is empty"),
                                            ("", "Incorrect parameter value for QUERY")])
def test_an_empty_query_is_refused_with_the_reason(rsai_provider, sample_index, tmp_path, query, message):
    import processing
    from qgis.core import QgsProcessingException

    index, _ = sample_index
    with pytest.raises(QgsProcessingException, match=message):
        processing.run("rsai:search_text", {"QUERY": query, "INDEX": str(index), "OUTPUT": str(tmp_path / "out.gpkg")})
    assert not (tmp_path / "out.gpkg").exists()


def test_similar_search_needs_a_tile_or_a_point(rsai_provider, sample_index, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    index, _ = sample_index
    with pytest.raises(QgsProcessingException, match="give either tile .* or point"):
        processing.run("rsai:search_similar", {"INDEX": str(index), "LAYER_NAME": SAMPLE_NAME,
                                               "OUTPUT": str(tmp_path / "similar.gpkg")})
    with pytest.raises(QgsProcessingException, match="no layer named 'elsewhere'; it has: olinda_landsat7"):
        processing.run("rsai:search_similar", {"INDEX": str(index), "LAYER_NAME": "elsewhere", "TILE": 3,
                                               "OUTPUT": str(tmp_path / "similar.gpkg")})


@pytest.mark.slow
def test_qgis_process_builds_an_index_and_searches_it_by_text(qgis_process, tmp_path):
    index, output = tmp_path / "index", tmp_path / "sea.gpkg"
    build = qgis_process("run", "rsai:build_search_index", "--", f"LAYERS={SAMPLE}", f"INDEX={index}")
    assert build.returncode == 0, build.log
    assert build.output["results"]["TILES"] == SAMPLE_TILES and build.output["results"]["BUILT"] == 1

    search = qgis_process("run", "rsai:search_text", "--", "QUERY=the sea", f"INDEX={index}", f"OUTPUT={output}")
    assert search.returncode == 0, search.log
    assert search.output["results"]["OUTPUT"] == str(output)
    tiles = ranked_tiles(output)
    assert len(tiles) == 20  # the default number of results
    assert [tile["score"] for tile in tiles] == sorted((tile["score"] for tile in tiles), reverse=True)
    assert all(inside_scene(tile["envelope"]) for tile in tiles)
    source = ogr.Open(str(output))  # kept in a name: GDAL 3.6's bindings crash when a layer outlives it
    assert source.GetLayer(0).GetSpatialRef().GetAuthorityCode(None) == "31985"
    assert water_share(tiles[0]["envelope"]) > 0.8


def test_search_changes_finds_where_the_land_became_water(rsai_provider, tmp_path):
    import json

    import processing

    after = tmp_path / "olinda_after.tif"
    with rasterio.open(SAMPLE) as scene:
        pixels, profile, descriptions = scene.read(), scene.profile, scene.descriptions
    pixels[:, :96, :96] = pixels[:, -96:, -96:].copy()  # the land of the north-west corner becomes sea
    with rasterio.open(after, "w", **profile) as destination:
        destination.write(pixels)
        destination.descriptions = descriptions

    def changes(query: str, **fusion) -> list[dict]:
        output = tmp_path / "changes.gpkg"
        result = processing.run("rsai:search_changes", {
            "BEFORE": str(SAMPLE), "AFTER": str(after), "QUERY": query, "INDEX": str(tmp_path / "index"),
            "TOP_K": 5, "DEVICE": 1, "OUTPUT": str(output), **fusion})
        assert result["DEVICE_USED"] == "CPUExecutionProvider" and result["OUTPUT"] == str(output)
        return ranked_tiles(output)

    def in_changed_corner(tile: dict) -> bool:  # the index grid has 30 m pixels: the corner is 91 px
        return tile["tile_row"] < 91 and tile["tile_col"] < 91

    water = changes("new water in the north west", FUSION=1)  # transformer feature fusion
    assert len(water) == 5 and all(in_changed_corner(tile) for tile in water)
    assert [tile["score"] for tile in water] == sorted((tile["score"] for tile in water), reverse=True)
    assert {tile["layer"] for tile in water} == {"olinda_landsat7 -> olinda_after"}
    assert all(inside_scene(tile["envelope"]) for tile in water)
    assert not any(in_changed_corner(tile) for tile in changes("there is no change", FUSION=1))

    assert len(changes("new water in the north west")) == 5
    (entry,) = json.loads((tmp_path / "index" / "manifest.json").read_text())["entries"]
    assert entry["kind"] == "change" and entry["model_name"] == "search_change_rgb_gff"  # the default fusion
    assert entry["inputs"] == {"before": [str(SAMPLE)], "after": [str(after)]}
