"""Processing algorithm: cut raster layers into tiles and store each tile's embedding in a search
index folder, for the text, similar-tile and change searches."""
from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from rs_qgis_plugin.algorithms.search_algorithm import BUILD_TASK, SearchAlgorithm, indexed_layers
from rs_qgis_plugin.worker_client import EngineWorker


class BuildSearchIndex(SearchAlgorithm):
    LAYERS, BANDS, TILE_SIZE, OVERLAP = "LAYERS", "BANDS", "TILE_SIZE", "OVERLAP"
    TILES, BUILT, REUSED = "TILES", "BUILT", "REUSED"
    task = BUILD_TASK
    model_tasks = ("image_embedding",)
    display_name = "Build search index"
    help_text = (
        "Cuts each layer into tiles (32 x 32 pixels of 30 m, about 1 km, for the shipped RGB "
        "model; layers are resampled to the model's resolution) and stores every tile's embedding "
        "in the index folder. 'Search layers by text' and 'Find similar tiles' then rank the "
        "tiles in milliseconds.\n\n"
        "Indexing into an existing index adds the layers to it. A layer whose files, model and "
        "tiling are unchanged since it was indexed is reused at once (REUSED counts them); a "
        "changed file is indexed again. The shipped model (models_onnx/search_image_rgb.md) finds "
        "open water and sea, vegetation and forest, cities, salt flats and arid land in true-colour "
        "imagery of about 30 m."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.add_parameter(
            QgsProcessingParameterMultipleLayers(self.LAYERS, "Raster layers", QgsProcessing.SourceType.TypeRaster),
            "Layers to index, each under its layer name. The shipped model reads the red, green and "
            "blue bands by their band descriptions (or the only three bands). Layers that are not "
            "files (web services, virtual rasters) are rendered over EXTENT first.")
        self.add_parameter(QgsProcessingParameterFolderDestination(self.INDEX, "Search index folder"),
                           "A new or empty folder, or an index built before (the layers are added to "
                           "it; layers of the same name are replaced).")
        self.add_model_parameter(
            "An image-embedding model exported by the toolbox. Empty: models_onnx/search_image_rgb.onnx. "
            "Other shipped encoders: search_image_ms.onnx (6-band multispectral: blue, green, red, NIR, "
            "SWIR 1.6 and 2.2 um) and search_image_s1_sim.onnx (Sentinel-1 VV, VH in dB; trained on "
            "simulated backscatter). One index holds the layers of every model of one embedding space "
            "(all of these), so one query searches RGB, multispectral and SAR layers together; a model "
            "of another space needs another folder.", default_model="search_image_rgb.onnx")
        self.add_parameter(
            QgsProcessingParameterString(self.BANDS, "Band mapping", optional=True),
            "MODEL_BAND=RASTER_BAND pairs separated by commas, bands counted from 1, e.g. "
            "red=3,green=2,blue=1. Needed only when band descriptions do not name the model's bands "
            "and the band count differs from the model's (rendered RGBA layers are read by their colours).")
        self.add_extent_parameter(
            "Area to index, in any CRS (converted to the first layer's CRS). Empty: each layer's "
            "whole extent. Required in practice for web layers.")
        self.add_parameter(
            QgsProcessingParameterNumber(self.TILE_SIZE, "Tile size (pixels)", QgsProcessingParameterNumber.Type.Integer,
                                         optional=True, minValue=8),
            "Side of a tile in pixels of the model's resolution. Empty: the model's (32 px for the "
            "shipped model); other sizes work but the model was trained at its own.")
        self.add_parameter(
            QgsProcessingParameterNumber(self.OVERLAP, "Tile overlap (pixels)", QgsProcessingParameterNumber.Type.Integer,
                                         optional=True, minValue=0),
            "Pixels shared by neighbouring tiles: more overlap finds objects across tile edges at the "
            "cost of more tiles. Empty: the model's (none for the shipped model).")
        self.add_device_parameter()
        self.add_strict_parameter()
        self.add_run_outputs()
        self.addOutput(QgsProcessingOutputNumber(self.TILES, "Tiles in the indexed layers"))
        self.addOutput(QgsProcessingOutputNumber(self.BUILT, "Layers embedded by this run"))
        self.addOutput(QgsProcessingOutputNumber(self.REUSED, "Layers reused unchanged"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        layers = self.parameterAsLayerList(parameters, self.LAYERS, context)
        if not layers:
            raise QgsProcessingException("Give at least one raster layer to index.")
        request = {**self.common_request(parameters, context, layers[0].crs()), **self.tiling(parameters, context),
                   "index": self.parameterAsFileOutput(parameters, self.INDEX, context)}
        if "extent" in request and any(layer.crs() != layers[0].crs() for layer in layers):
            raise QgsProcessingException("The layers are in different CRSs and the engine takes EXTENT in the "
                                         "layers' CRS: index them in separate runs, or leave EXTENT empty.")
        with EngineWorker() as worker:
            request.update(indexed_layers(layers, request, context, feedback, worker))
            result = worker.run(self.task, request, feedback)
        for layer in result["layers"]:
            feedback.pushInfo(f"{layer['name']}: {layer['tiles']} tiles "
                              f"{'reused' if layer['reused'] else 'embedded'} in {layer['seconds']} s")
        return {self.INDEX: result["index"], self.TILES: result["tiles"], self.BUILT: result["built"],
                self.REUSED: result["reused"], **self.run_results(result)}

    def tiling(self, parameters, context) -> dict:
        """Band mapping, tile size and overlap, when given."""
        request = {"bands": self.parameterAsString(parameters, self.BANDS, context).strip(),
                   "tile_size": self.optional_int(parameters, self.TILE_SIZE, context),
                   "overlap": self.optional_int(parameters, self.OVERLAP, context)}
        return {key: value for key, value in request.items() if value not in (None, "")}
