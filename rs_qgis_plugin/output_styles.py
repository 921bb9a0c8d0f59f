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
                     high_color: str = HIGH_VALUE_COLOR) -> None:
    """A colour ramp over the raster layer's value range, labelled in ``units``."""
    provider = layer.dataProvider()
    stats = provider.bandStatistics(1, QgsRasterBandStats.Min | QgsRasterBandStats.Max)
    ramp = QgsColorRampShader(
        stats.minimumValue,
        stats.maximumValue,
        QgsGradientColorRamp(QColor(low_color), QColor(high_color)),
    )
    ramp.classifyColorRamp(RAMP_CLASSES)
    items = ramp.colorRampItemList()
    for item in items:
        item.label = f"{item.value:.{decimals}f} {units}".strip()
    ramp.setColorRampItemList(items)
    shader = QgsRasterShader(stats.minimumValue, stats.maximumValue)
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(provider, 1, shader)
    renderer.setClassificationMin(stats.minimumValue)
    renderer.setClassificationMax(stats.maximumValue)
    layer.setRenderer(renderer)


class RegressionStyle(OutputStyle):
    """A colour ramp over the layer's value range, labelled in the quantity's units."""

    def __init__(self, units: str):
        super().__init__()
        self.units = units

    def apply(self, layer) -> None:
        apply_value_ramp(layer, self.units)


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
    settings.placement = QgsPalLayerSettings.OverPoint
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
        settings.placement = QgsPalLayerSettings.OverPoint
        layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
        layer.setLabelsEnabled(True)
        layer.triggerRepaint()
        OutputStyle.awaiting.discard(self)
