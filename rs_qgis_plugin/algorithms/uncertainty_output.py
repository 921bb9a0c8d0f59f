"""The uncertainty layer (test-time augmentation, engine/uncertainty.py) and the out-of-distribution
share (engine/input_distribution.py) of the algorithms that map pixels with a model."""
from qgis.core import QgsProcessingOutputNumber, QgsProcessingParameterRasterDestination

from rs_qgis_plugin.output_styles import UncertaintyStyle


class UncertaintyOutput:
    """Mixed into a ModelAlgorithm: the UNCERTAINTY parameter, its request entry and its results."""

    UNCERTAINTY, AUGMENTATIONS, OUT_OF_DISTRIBUTION = "UNCERTAINTY", "AUGMENTATIONS", "OUT_OF_DISTRIBUTION"

    def add_uncertainty_parameter(self) -> None:
        self.add_parameter(
            QgsProcessingParameterRasterDestination(self.UNCERTAINTY, "Uncertainty layer", optional=True,
                                                    createByDefault=False),
            "Optional GeoTIFF of how far to trust each pixel, by test-time augmentation: the model also runs on "
            "every tile flipped and rotated by 90 degrees (as its contract allows: 8 or 4 views, about as many "
            "times the model time), and the output becomes the mean over the views. Regression: the spread "
            "(standard deviation) over the views, in the output's units. Classes: the entropy of the mean class "
            "probabilities (0 certain, 1 every class alike) and the largest of them. A last band gives, for models "
            "that record their training inputs, the input's distance to them (above 1: out of distribution). "
            "Loaded with its first band on a ramp from pale (certain) to red (uncertain) and a legend.")
        self.addOutput(QgsProcessingOutputNumber(self.AUGMENTATIONS, "Test-time augmentations (views per tile)"))
        self.addOutput(QgsProcessingOutputNumber(self.OUT_OF_DISTRIBUTION,
                                                 "Share of pixels unlike the model's training inputs"))

    def uncertainty_request(self, parameters, context) -> dict:
        """The engine's ``uncertainty`` entry; the layer is styled with its legend when it loads."""
        path = self.parameterAsOutputLayer(parameters, self.UNCERTAINTY, context)
        if path and context.willLoadLayerOnCompletion(path):
            context.layerToLoadOnCompletionDetails(path).setPostProcessor(UncertaintyStyle())
        return {"uncertainty": path} if path else {}

    def uncertainty_results(self, result: dict, feedback) -> dict:
        """Log the out-of-distribution share and the augmentation's cost; the algorithm's outputs."""
        flagged = result.get("out_of_distribution")
        if flagged:
            feedback.pushInfo(f"Out of distribution: {flagged['share']:.1%} of the pixels (calibrated on the "
                              f"training data: {flagged['calibrated_share']:.1%})")
        augmentation = result.get("uncertainty")
        if augmentation:
            feedback.pushInfo(f"Uncertainty: {augmentation['augmentations']} views per tile, the output is their mean; "
                              f"model time {result['model_seconds']} s, "
                              f"{augmentation['model_seconds_per_augmentation']} s per view")
        return {self.UNCERTAINTY: result["outputs"].get("uncertainty"),
                self.AUGMENTATIONS: augmentation["augmentations"] if augmentation else None,
                self.OUT_OF_DISTRIBUTION: flagged["share"] if flagged else None}
