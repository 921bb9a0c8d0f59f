"""Processing algorithm: seabed classes (sand, seagrass, ...) from multispectral imagery."""
from rs_qgis_plugin.algorithms.raster_model_algorithm import RasterModelAlgorithm


class ClassifySeabed(RasterModelAlgorithm):
    task = "classify_seabed"
    model_tasks = ("seabed",)
    over_water = True
    default_model = "seabed_s2_sim.onnx"
    output_description = "Seabed classes"
    output_help = (
        "GeoTIFF of class values 0, 1, ... (one per model class), on the input's grid (the "
        "model's grid when resampled); pixels without valid input are nodata. Loaded with the "
        "model's class names and colours."
    )

    display_name = "Classify seabed"
    group_name, group_id = "Coastal and marine", "coastal_marine"
    help_text = (
        "Maps seabed classes (for instance sand, seagrass, rock) in shallow, clear water from "
        "a multispectral image with an ONNX segmentation model.\n\n"
        "The model's contract gives its bands, normalisation, tiling and class names and "
        "colours; the engine checks the input against it and says what is missing. The "
        "shipped model was trained on simulated scenes (see its model card in models_onnx/).\n\n"
        "The work runs in the engine's Python interpreter (Processing settings)."
    )

    def add_task_parameters(self):
        self.add_probabilities_parameter(
            "Optional GeoTIFF with one band per class holding the model's probability (0-1) of "
            "that class, in the order of the class values: useful to judge where the map is "
            "uncertain."
        )

    def task_results(self, result):
        return {self.PROBABILITIES: result["outputs"].get("probabilities")}
