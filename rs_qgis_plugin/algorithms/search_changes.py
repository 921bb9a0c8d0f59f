"""Processing algorithm: rank the tiles of two rasters of one area at two dates by how well a
sentence describes what changed between them."""
from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterRasterLayer,
)

from rs_qgis_plugin.algorithms.search_algorithm import SearchAlgorithm
from rs_qgis_plugin.raster_input import readable_file
from rs_qgis_plugin.worker_client import EngineWorker

FUSIONS = (  # the engine's default first
    ("gff", "Global feature fusion (the difference of the two dates' pooled features)"),
    ("tff", "Transformer feature fusion (a transformer over both dates' features)"),
)


class SearchChanges(SearchAlgorithm):
    BEFORE, AFTER, FUSION = "BEFORE", "AFTER", "FUSION"
    task = "search_changes"
    model_tasks = ("change_embedding",)
    display_name = "Search changes between two dates"
    help_text = (
        "Finds where a described change happened, e.g. 'new buildings on former farmland', "
        "between two rasters of one area. A bitemporal encoder embeds each (before, after) tile "
        "pair in the text space (text to image-time-series retrieval) and the pairs are ranked by "
        "cosine similarity to the sentence. The pair's embeddings are kept in the index folder: "
        "another query on the same pair runs no image model. The after raster is read on the "
        "before raster's grid (reprojected when needed)."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.add_parameter(QgsProcessingParameterRasterLayer(self.BEFORE, "Before (earlier date)"),
                           "The earlier image. It defines the tile grid and the results' CRS.")
        self.add_parameter(QgsProcessingParameterRasterLayer(self.AFTER, "After (later date)"),
                           "The later image of the same area, with the same bands.")
        self.add_query_parameter("The change to look for, e.g. 'new buildings on former farmland'.")
        self.add_parameter(QgsProcessingParameterFolderDestination(self.INDEX, "Search index folder"),
                           "Where the pair's embeddings are kept: a new or empty folder, or an index "
                           "built before with the change model's embedding space.")
        self.add_parameter(
            QgsProcessingParameterEnum(self.FUSION, "Fusion of the two dates", options=[label for _, label in FUSIONS],
                                       defaultValue=0),
            "How the change model combines the dates; each fusion is a shipped model "
            "(models_onnx/search_change_rgb_gff.onnx, search_change_rgb_tff.onnx; see "
            "search_change_rgb.md). Global fusion is smaller; it gives every pair of identical tiles "
            "the same embedding, so tiles that did not change at all tie in the ranking.")
        self.add_model_parameter("A change-embedding model exported by the toolbox, used instead of the "
                                 "fusion's shipped model.", default_model="the shipped model of the fusion")
        self.add_ranking_parameters()
        self.add_device_parameter()
        self.add_strict_parameter()
        self.addOutput(QgsProcessingOutputString(self.DEVICE_USED, "Device that ran the change model"))
        self.addOutput(QgsProcessingOutputString(self.WARNINGS, "Warnings (one per line)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        before, after = (self.parameterAsRasterLayer(parameters, name, context) for name in (self.BEFORE, self.AFTER))
        if before is None or after is None:
            raise QgsProcessingException("Give both the before and the after raster.")
        request = {**self.ranking_request(parameters, context),
                   "index": self.parameterAsFileOutput(parameters, self.INDEX, context),
                   "query": self.parameterAsString(parameters, self.QUERY, context),
                   "fusion": FUSIONS[self.parameterAsEnum(parameters, self.FUSION, context)][0],
                   "name": f"{before.name()} -> {after.name()}"}
        with EngineWorker() as worker:
            for key, layer in (("before", before), ("after", after)):
                request[key] = readable_file(layer, self.task, request, context, feedback, worker)
            result = self.ranked_tiles(request, context, feedback, worker)
        feedback.pushInfo(f"Pair {result['pair']['name']!r}: {result['pair']['tiles']} tiles "
                          f"{'reused from the index' if result['pair']['reused'] else 'embedded'}")
        return {**self.ranking_outputs(request, result), **self.run_results(result)}
