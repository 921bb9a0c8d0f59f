"""What the text-search algorithms share: their group, the index folder, optional whole numbers,
the layers a build sends to the engine, and the ranked tiles every search returns (a GeoPackage of
tile polygons styled by score and labelled by rank, and an optional similarity heatmap)."""
from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from rs_qgis_plugin.algorithms.model_algorithm import ModelAlgorithm
from rs_qgis_plugin.output_styles import SearchResultsStyle, SimilarityHeatmapStyle
from rs_qgis_plugin.raster_input import readable_file

BUILD_TASK = "build_search_index"
DEFAULT_TOP_K = 20
MAX_TOP_K = 10_000


def distinct_names(layers) -> list[str]:
    """The layers' names, numbered where several layers share one ("scene", "scene (2)"): the
    index needs one distinct name per layer."""
    names = []
    for layer in layers:
        name, number = layer.name(), 1
        while name in names:
            number += 1
            name = f"{layer.name()} ({number})"
        names.append(name)
    return names


def indexed_layers(layers, request: dict, context, feedback, worker) -> dict:
    """The ``input`` and ``names`` of a build request: each layer's file (rendered first when it is
    not a file the engine reads, over the request's extent) and a distinct display name."""
    return {"input": [readable_file(layer, BUILD_TASK, request, context, feedback, worker) for layer in layers],
            "names": distinct_names(layers)}


class SearchAlgorithm(ModelAlgorithm):
    INDEX, QUERY, TOP_K, HEATMAP, QUERY_MS = "INDEX", "QUERY", "TOP_K", "HEATMAP", "QUERY_MS"
    group_name, group_id = "Text search", "search"

    def add_index_parameter(self) -> None:
        """An index to search, made by Build search index."""
        self.add_parameter(
            QgsProcessingParameterFile(self.INDEX, "Search index folder", behavior=QgsProcessingParameterFile.Behavior.Folder),
            "A folder written by 'Build search index': the layers' tile embeddings. Searching it "
            "runs no image model, so a query takes milliseconds.")

    def add_query_parameter(self, help_text: str) -> None:
        self.add_parameter(QgsProcessingParameterString(self.QUERY, "Query"), help_text)

    def add_ranking_parameters(self) -> None:
        """How many tiles to return, the GeoPackage of ranked tiles and the optional heatmap."""
        self.add_parameter(
            QgsProcessingParameterNumber(self.TOP_K, "Number of results", QgsProcessingParameterNumber.Type.Integer,
                                         DEFAULT_TOP_K, minValue=1, maxValue=MAX_TOP_K),
            "How many of the best matching tiles to return, best first.")
        self.add_parameter(
            QgsProcessingParameterVectorDestination(self.OUTPUT, "Ranked tiles", QgsProcessing.SourceType.TypeVectorPolygon),
            "GeoPackage (table search_results) with one polygon per returned tile: rank (1 = best), "
            "score (cosine similarity to the query), layer and tile number in the index, the tile's "
            "row and column offsets in pixels, and the query. In the CRS of the index's first layer; "
            "loaded coloured by score and labelled with the rank.")
        self.add_parameter(
            QgsProcessingParameterRasterDestination(self.HEATMAP, "Similarity heatmap", optional=True,
                                                    createByDefault=False),
            "Optional GeoTIFF with one cell per tile step on the grid of the best result's layer: "
            "every tile's score for the query (not only the returned ones); nodata where no tile "
            "was indexed.")
        self.addOutput(QgsProcessingOutputNumber(self.QUERY_MS, "Milliseconds the ranking took"))
        self.addOutput(QgsProcessingOutputNumber(self.SECONDS, "Seconds the engine took"))

    def ranking_request(self, parameters, context) -> dict:
        """The engine params every search takes: device, output, top_k, heatmap when asked for."""
        request = {**self.common_request(parameters, context, None),
                   "top_k": self.parameterAsInt(parameters, self.TOP_K, context)}
        heatmap = self.parameterAsOutputLayer(parameters, self.HEATMAP, context)
        if heatmap:
            request["heatmap"] = heatmap
        return request

    def ranked_tiles(self, request: dict, context, feedback, worker) -> dict:
        """Run the search, log the hits, and style its outputs for when they are loaded."""
        result = worker.run(self.task, request, feedback)
        for hit in result["results"]:
            feedback.pushInfo(f"{hit['rank']}. {hit['layer']} tile {hit['tile']}: score {hit['score']:.3f}")
        for key, style in (("output", SearchResultsStyle), ("heatmap", SimilarityHeatmapStyle)):
            if request.get(key) and context.willLoadLayerOnCompletion(request[key]):
                context.layerToLoadOnCompletionDetails(request[key]).setPostProcessor(style())
        return result

    def ranking_outputs(self, request: dict, result: dict) -> dict:
        heatmap = request.get("heatmap") if result["heatmap_layer"] else None  # no hits: no heatmap
        return {self.OUTPUT: request["output"], self.HEATMAP: heatmap,
                self.QUERY_MS: result["query_ms"], self.SECONDS: result["seconds"]}
