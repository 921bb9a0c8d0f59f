"""Turns a QGIS raster layer into a file the engine can read.

The engine reads plain raster files with GDAL in another process. Layers that are not such files
(WMS/XYZ and other web services, virtual rasters, GDAL sources in memory or behind connection
strings) are rendered first to a temporary GeoTIFF over the chosen extent, at the model's ground
sampling distance.
"""
import os

from qgis.core import (
    QgsDistanceArea,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingUtils,
    QgsProviderRegistry,
    QgsRasterBlockFeedback,
    QgsRasterDataProvider,
    QgsRasterFileWriter,
    QgsRasterPipe,
    QgsRectangle,
    QgsUnitTypes,
)

MAX_RENDERED_PIXELS = 100_000_000  # guards against rendering a whole web service by accident


def layer_file(layer) -> str | None:
    """The layer's file when GDAL reads it from a plain file on disk, else None."""
    if layer.providerType() != "gdal":
        return None
    path = QgsProviderRegistry.instance().decodeUri("gdal", layer.source()).get("path") or ""
    return path if os.path.isfile(path) else None


def render_pixel_size(layer, gsd_m: float | None, extent: QgsRectangle,
                      transform_context) -> tuple[float, float]:
    """Pixel width and height in the layer's CRS units: the model's ground sampling distance, else
    the layer's own resolution. Like the engine, metres are converted with the CRS's unit for a
    projected CRS and on the ellipsoid at the extent's centre for a geographic one."""
    crs = layer.crs()
    if gsd_m and crs.isGeographic():
        distance = QgsDistanceArea()
        distance.setSourceCrs(crs, transform_context)
        distance.setEllipsoid(crs.ellipsoidAcronym() or "EPSG:7030")  # WGS 84 when unknown
        centre = extent.center()
        metres_per_degree_x = distance.measureLine(
            QgsPointXY(centre.x() - 0.5, centre.y()), QgsPointXY(centre.x() + 0.5, centre.y())
        )
        metres_per_degree_y = distance.measureLine(
            QgsPointXY(centre.x(), centre.y() - 0.5), QgsPointXY(centre.x(), centre.y() + 0.5)
        )
        return gsd_m / metres_per_degree_x, gsd_m / metres_per_degree_y
    if gsd_m:
        step = gsd_m * QgsUnitTypes.fromUnitToUnitFactor(QgsUnitTypes.DistanceUnit.DistanceMeters, crs.mapUnits())
        return step, step
    if layer.dataProvider().capabilities() & QgsRasterDataProvider.Capability.Size:
        return layer.rasterUnitsPerPixelX(), layer.rasterUnitsPerPixelY()
    raise QgsProcessingException(
        f"Layer {layer.name()!r} has no resolution of its own and the model does not state the "
        "ground sampling distance it was trained at: export the layer to a GeoTIFF at a suitable "
        "resolution first."
    )


def render_to_geotiff(layer, extent: QgsRectangle, pixel_size: tuple[float, float], path: str,
                      transform_context, feedback=None) -> str:
    """Write ``layer``'s data over ``extent`` (layer CRS) with pixels of ``pixel_size`` (width,
    height in layer units) to a GeoTIFF whose grid starts at the extent's top-left corner."""
    step_x, step_y = pixel_size
    width = max(1, round(extent.width() / step_x))
    height = max(1, round(extent.height() / step_y))
    if width * height > MAX_RENDERED_PIXELS:
        raise QgsProcessingException(
            f"Rendering layer {layer.name()!r} with {step_x:g} x {step_y:g} map unit pixels over "
            f"{extent.toString(2)} would make a {width} x {height} raster: choose a smaller extent."
        )
    grid = QgsRectangle(
        extent.xMinimum(), extent.yMaximum() - height * step_y,
        extent.xMinimum() + width * step_x, extent.yMaximum(),
    )
    pipe = QgsRasterPipe()
    if not pipe.set(layer.dataProvider().clone()):
        raise QgsProcessingException(f"Cannot read layer {layer.name()!r} for rendering.")
    block_feedback = QgsRasterBlockFeedback()
    if feedback is not None:
        block_feedback.progressChanged.connect(feedback.setProgress)
        feedback.canceled.connect(block_feedback.cancel)
    writer = QgsRasterFileWriter(path)
    writer.setOutputFormat("GTiff")
    error = writer.writeRaster(pipe, width, height, grid, layer.crs(), transform_context, block_feedback)
    if error == QgsRasterFileWriter.WriterError.WriteCanceled:
        raise QgsProcessingException("Cancelled: no output was written.")
    if error != QgsRasterFileWriter.WriterError.NoError:
        raise QgsProcessingException(
            f"Rendering layer {layer.name()!r} to {path} failed (QgsRasterFileWriter error {error})."
        )
    return path


def readable_file(layer, task: str, request: dict, context, feedback, worker) -> str:
    """The layer's file, or a GeoTIFF rendered from it over the request's extent (the layer's own
    when none) at the resolution of the task's model (asked from the engine worker)."""
    path = layer_file(layer)
    if path:
        return path
    contract = worker.describe_model(task, request.get("model"))
    extent = QgsRectangle(*request["extent"]) if "extent" in request else layer.extent()
    path = QgsProcessingUtils.generateTempFilename(f"rendered_{layer.id()}.tif")
    feedback.pushInfo(f"Layer {layer.name()!r} ({layer.providerType()}) is not a file the engine can read: "
                      f"rendering it to {path}.")
    pixel_size = render_pixel_size(layer, contract.get("gsd_m"), extent, context.transformContext())
    return render_to_geotiff(layer, extent, pixel_size, path, context.transformContext(), feedback)
