"""Processing algorithm: restore a HyCoT-compressed raster."""
from rs_qgis_plugin.algorithms.raster_model_algorithm import RasterModelAlgorithm


class DecompressHyperspectral(RasterModelAlgorithm):
    task = "decompress_hyperspectral"
    model_tasks = ("hycot_decoder",)
    default_model = "the decoder named in the compressed file"
    area_parameters = ()
    checks_input_values = False  # its input is the toolbox's own latent codes
    styled = False
    maps_pixels = False  # a pixelwise codec: every flipped or rotated view gives the same values
    input_help = "A raster written by 'Compress hyperspectral raster (HyCoT)'."
    output_description = "Decompressed raster"
    output_help = (
        "GeoTIFF with the original grid, band count, band names, data type and nodata restored."
    )

    display_name = "Decompress hyperspectral raster (HyCoT)"
    group_name, group_id = "Hyperspectral", "hyperspectral"
    help_text = (
        "Restores a hyperspectral image compressed by 'Compress hyperspectral raster (HyCoT)' "
        "with the matching decoder. A file made by another encoder is refused: the decoder and "
        "the file must share the codec's pair id."
    )
