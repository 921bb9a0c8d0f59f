"""Styles of the engine's outputs, applied when Processing loads them into the project (and by the
search dock to its temporary layers)."""
from qgis.core import (
    NULL,
    QgsCategorizedSymbolRenderer,
    QgsClassificationEqualInterval,
    QgsColorRampShader,
    QgsFillSymbol,
    QgsGradientColorRamp,
    QgsGraduatedSymbolRenderer,
    QgsLimitedRandomColorRamp,
    QgsPalettedRasterRenderer,
    QgsPalLayerSettings,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterBandStats,
    QgsRasterShader,
    QgsRendererCategory,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtGui import QColor

LOW_VALUE_COLOR = "#deebf7"  # shallow water: light blue
HIGH_VALUE_COLOR = "#08306b"  # deep water: dark blue
RAMP_CLASSES = 6
LOW_SCORE_COLOR = "#fee08b"  # search results: weak matches pale yellow
HIGH_SCORE_COLOR = "#d7301f"  # best matches red
CERTAIN_COLOR = "#f7f7f7"  # uncertainty layer: the views agree / one class stands out
UNCERTAIN_COLOR = "#b2182b"  # the views disagree / every class alike


class OutputStyle(QgsProcessingLayerPostProcessorInterface):
    """A style waiting for its output layer to load. QGIS keeps only a C++ pointer to it and the
    algorithm instance that made it is deleted after the run, so the style holds a reference to
    itself in ``awaiting`` until it has styled its layer."""

    awaiting: set = set()

    def __init__(self):
        super().__init__()
        OutputStyle.awaiting.add(self)

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        self.apply(layer)
        layer.triggerRepaint()
        OutputStyle.awaiting.discard(self)

    def apply(self, layer) -> None:
        raise NotImplementedError


def apply_value_ramp(layer, units: str, decimals: int = 1, low_color: str = LOW_VALUE_COLOR,
                     high_color: str = HIGH_VALUE_COLOR, value_range: tuple[float, float] | None = None,
                     ends: tuple[str, str] = ("", "")) -> None:
    """A colour ramp of band 1 over ``value_range`` (default: the band's value range), labelled in
    ``units``; ``ends`` are added to the legend's first and last labels (what the extremes mean)."""
    provider = layer.dataProvider()
    if value_range is None:
        stats = provider.bandStatistics(1, QgsRasterBandStats.Stats.Min | QgsRasterBandStats.Stats.Max)
        value_range = (stats.minimumValue, stats.maximumValue)
    low, high = value_range
    ramp = QgsColorRampShader(low, high, QgsGradientColorRamp(QColor(low_color), QColor(high_color)))
    ramp.classifyColorRamp(RAMP_CLASSES)
    items = ramp.colorRampItemList()
    for item in items:
        item.label = f"{item.value:.{decimals}f} {units}".strip()
    for item, end in zip((items[0], items[-1]) if items else (), ends):
        item.label = f"{item.label} ({end})" if end else item.label
    ramp.setColorRampItemList(items)
    shader = QgsRasterShader(low, high)
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(provider, 1, shader)
    renderer.setClassificationMin(low)
    renderer.setClassificationMax(high)
    layer.setRenderer(renderer)


class RegressionStyle(OutputStyle):
    """A colour ramp over the layer's value range, labelled in the quantity's units."""

    def __init__(self, units: str):
        super().__init__()
        self.units = units

    def apply(self, layer) -> None:
        apply_value_ramp(layer, self.units)


class UncertaintyStyle(OutputStyle):
    """The uncertainty layer (engine/uncertainty.py) shows its first band, pale where the model is
    sure and red where it is not, with a legend that says what the values mean. Which band that is
    the layer's own band description says: the entropy of the class probabilities on 0-1, or the
    spread over the test-time views of the first output, in its units, over the layer's range (the
    other bands, largest probability and input distance, stay one click away in the layer's
    properties)."""

    def apply(self, layer) -> None:
        description = layer.bandName(1)  # "Band 1: " and GDAL's description of the band
        if "entropy" in description:
            apply_value_ramp(layer, "entropy", 2, CERTAIN_COLOR, UNCERTAIN_COLOR, (0.0, 1.0),
                             ("one class certain", "every class alike"))
        else:
            units = description[description.rfind("(") + 1:description.rfind(")")] if description.endswith(")") else ""
            apply_value_ramp(layer, units, 2, CERTAIN_COLOR, UNCERTAIN_COLOR,
                             ends=("views agree", "views disagree most"))


def style_similarity_heatmap(layer) -> None:
    """A search heatmap: each tile's cosine similarity to the query, pale (weak) to red (strong)."""
    apply_value_ramp(layer, "", decimals=2, low_color=LOW_SCORE_COLOR, high_color=HIGH_SCORE_COLOR)


def style_search_results(layer) -> None:
    """Tile polygons graduated by ``score`` (pale yellow to red, half transparent so the imagery
    shows through) and labelled with their ``rank``."""
    renderer = QgsGraduatedSymbolRenderer("score")
    renderer.setSourceSymbol(QgsFillSymbol.createSimple({"outline_color": "#202020", "outline_width": "0.4"}))
    renderer.setSourceColorRamp(QgsGradientColorRamp(QColor(LOW_SCORE_COLOR), QColor(HIGH_SCORE_COLOR)))
    renderer.setClassificationMethod(QgsClassificationEqualInterval())
    renderer.updateClasses(layer, RAMP_CLASSES)
    layer.setRenderer(renderer)
    layer.setOpacity(0.6)
    settings = QgsPalLayerSettings()
    settings.fieldName = "rank"
    settings.placement = QgsPalLayerSettings.Placement.OverPoint
    layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
    layer.setLabelsEnabled(True)


class SearchResultsStyle(OutputStyle):
    """Search results loaded by Processing: see style_search_results."""

    def apply(self, layer) -> None:
        style_search_results(layer)


class SimilarityHeatmapStyle(OutputStyle):
    """A search heatmap loaded by Processing: see style_similarity_heatmap."""

    def apply(self, layer) -> None:
        style_similarity_heatmap(layer)


class ClassesStyle(OutputStyle):
    """One colour and name per class value (0, 1, ...); random colours when the model has none."""

    def __init__(self, names: list[str], colors: list[str]):
        super().__init__()
        self.names = list(names)
        self.colors = [QColor(c) for c in colors] or QgsLimitedRandomColorRamp.randomColors(len(names))

    def apply(self, layer) -> None:
        classes = [
            QgsPalettedRasterRenderer.Class(value, color, name)
            for value, (name, color) in enumerate(zip(self.names, self.colors))
        ]
        layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))


def style_for(result: dict) -> OutputStyle:
    """The style that suits an engine result (its ``kind``, ``names``, ``colors``, ``units``)."""
    if result["kind"] == "classes":
        return ClassesStyle(result["names"], result.get("colors") or [])
    return RegressionStyle(result.get("units", ""))


class SceneLabelsStyle(QgsProcessingLayerPostProcessorInterface):
    """Patches coloured by their top label, labelled with all their labels; nodata patches hatched."""

    def __init__(self, names: list[str], colors: list[str]):
        super().__init__()
        self.names = list(names)
        self.colors = [QColor(c) for c in colors] or QgsLimitedRandomColorRamp.randomColors(len(names))
        OutputStyle.awaiting.add(self)

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        categories = []
        for name, color in zip(self.names, self.colors):
            symbol = QgsFillSymbol.createSimple({"color": color.name(), "outline_color": "#303030"})
            categories.append(QgsRendererCategory(name, symbol, name))
        nodata = QgsFillSymbol.createSimple({"style": "b_diagonal", "color": "#999999", "outline_color": "#999999"})
        categories.append(QgsRendererCategory(NULL, nodata, "no data (not classified)"))
        layer.setRenderer(QgsCategorizedSymbolRenderer("top_label", categories))
        settings = QgsPalLayerSettings()
        settings.fieldName = "labels"
        settings.placement = QgsPalLayerSettings.Placement.OverPoint
        layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
        layer.setLabelsEnabled(True)
        layer.triggerRepaint()
        OutputStyle.awaiting.discard(self)
