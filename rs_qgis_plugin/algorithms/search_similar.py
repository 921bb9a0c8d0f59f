"""Processing algorithm: rank the tiles of a search index by their likeness to one indexed tile."""
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessingParameterNumber,
    QgsProcessingParameterPoint,
    QgsProcessingParameterString,
)

from rs_qgis_plugin.algorithms.search_algorithm import SearchAlgorithm
from rs_qgis_plugin.worker_client import EngineWorker


class SearchSimilar(SearchAlgorithm):
    LAYER_NAME, TILE, POINT = "LAYER_NAME", "TILE", "POINT"
    task = "search_similar"
    display_name = "Find similar tiles"
    help_text = (
        "Finds the indexed tiles that look most like one tile of the index (cosine similarity of "
        "their embeddings; no model runs). Name the tile by its layer and either its tile number "
        "(the 'tile' field of a search result) or a point inside it. The query tile itself is "
        "not among the results."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.add_index_parameter()
        self.add_parameter(QgsProcessingParameterString(self.LAYER_NAME, "Layer name in the index"),
                           "The name the query tile's layer has in the index (its layer name when it "
                           "was indexed; the 'layer' field of a search result).")
        self.add_parameter(
            QgsProcessingParameterNumber(self.TILE, "Tile number", QgsProcessingParameterNumber.Type.Integer,
                                         optional=True, minValue=0),
            "The query tile's number in its layer (the 'tile' field of a search result). Give this "
            "or POINT.")
        self.add_parameter(QgsProcessingParameterPoint(self.POINT, "Point in the query tile", optional=True),
                           "A point inside the query tile, in any CRS (e.g. clicked on the map). Give "
                           "this or TILE.")
        self.add_ranking_parameters()

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        request = {**self.ranking_request(parameters, context), **self.query_tile(parameters, context),
                   "index": self.parameterAsFile(parameters, self.INDEX, context)}
        with EngineWorker() as worker:
            result = self.ranked_tiles(request, context, feedback, worker)
        feedback.pushInfo(f"Query tile: {result['query_tile']['layer']} tile {result['query_tile']['tile']}")
        return self.ranking_outputs(request, result)

    def query_tile(self, parameters, context) -> dict:
        """layer, and tile or point (with its CRS when it has one): the engine refuses both or neither."""
        request = {"layer": self.parameterAsString(parameters, self.LAYER_NAME, context),
                   "tile": self.optional_int(parameters, self.TILE, context)}
        if parameters.get(self.POINT) not in (None, ""):
            point = self.parameterAsPoint(parameters, self.POINT, context)
            crs = self.parameterAsPointCrs(parameters, self.POINT, context)
            request["point"] = [point.x(), point.y()]
            if crs.isValid():
                request["point_crs"] = crs.toWkt(QgsCoordinateReferenceSystem.WktVariant.WKT_PREFERRED)
        return {key: value for key, value in request.items() if value is not None}
