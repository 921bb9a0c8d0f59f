"""Processing algorithm: rank the tiles of a search index by how well a sentence describes them."""
from rs_qgis_plugin.algorithms.search_algorithm import SearchAlgorithm
from rs_qgis_plugin.worker_client import EngineWorker


class SearchText(SearchAlgorithm):
    task = "search_text"
    display_name = "Search layers by text"
    help_text = (
        "Finds the tiles of the indexed layers that best match a description such as 'the sea', "
        "'dense green vegetation, forest' or 'a city': the sentence is embedded by a text encoder "
        "in the same space as the tiles (CLIP-style retrieval) and the tiles are ranked by cosine "
        "similarity. Build the index first with 'Build search index'.\n\n"
        "The shipped pair (models_onnx/search_image_rgb.md, search_text_minilm.md) knows open "
        "water and sea, vegetation and forest, cities, salt flats and arid land, at about 30 m; "
        "it does not know other things (roads, ships, crops) and ranks them arbitrarily."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.add_query_parameter(
            "What to look for, in English words, e.g. 'the sea' or 'dense green vegetation, forest'.")
        self.add_index_parameter()
        self.add_ranking_parameters()
        self.add_device_parameter()

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        request = {**self.ranking_request(parameters, context),
                   "index": self.parameterAsFile(parameters, self.INDEX, context),
                   "query": self.parameterAsString(parameters, self.QUERY, context)}
        with EngineWorker() as worker:
            result = self.ranked_tiles(request, context, feedback, worker)
        return self.ranking_outputs(request, result)
