"""Processing algorithm: compress a hyperspectral raster with a HyCoT encoder."""
from qgis.core import QgsProcessingOutputNumber, QgsProcessingParameterBoolean, QgsProcessingParameterEnum

from rs_qgis_plugin.algorithms.raster_model_algorithm import RasterModelAlgorithm

RATIOS = (4, 8, 16, 32)
REPORT = (
    ("BITS_PER_PIXEL_PER_CHANNEL", "bits_per_pixel_per_channel",
     "Bit rate (bits per pixel per channel, HyCoT paper convention: 32 bits per latent value)"),
    ("SIZE_RATIO", "size_ratio", "Size ratio (uncompressed input / compressed file)"),
    ("PSNR_DB", "psnr_db", "PSNR against the input (dB)"),
    ("SPECTRAL_ANGLE_DEG", "spectral_angle_deg", "Mean spectral angle against the input (degrees)"),
)


class CompressHyperspectral(RasterModelAlgorithm):
    RATIO = "RATIO"
    QUALITY = "QUALITY"
    OUT_OF_DISTRIBUTION = "OUT_OF_DISTRIBUTION"

    task = "compress_hyperspectral"
    model_tasks = ("hycot_encoder",)
    default_model = "hycot_cr8_enmap_sim_encoder.onnx (or the one for RATIO)"
    area_parameters = (RasterModelAlgorithm.BANDS, RasterModelAlgorithm.EXTENT)
    styled = False
    maps_pixels = False  # a pixelwise codec: every flipped or rotated view gives the same values
    input_help = (
        "Hyperspectral image (for the shipped models: EnMAP-like, 202 bands of reflectance x 10000 "
        "after water-vapour band removal). Bands are taken in order when the count matches."
    )
    output_description = "Compressed raster"
    output_help = (
        "GeoTIFF on the input's grid holding the latent bands (UInt16; 0 = nodata). Its metadata "
        "names the codec, the decoder and the original band names, data type and nodata, so "
        "'Decompress hyperspectral raster' can restore it."
    )

    display_name = "Compress hyperspectral raster (HyCoT)"
    group_name, group_id = "Hyperspectral", "hyperspectral"
    help_text = (
        "Compresses a hyperspectral image pixel by pixel with a learned transformer encoder "
        "(HyCoT, Fuchs, Rasti & Demir 2024): each spectrum becomes ceil(bands / ratio) latent values "
        "stored at 16 bits. Reports the bit rate as the HyCoT paper counts it (32 bits per latent "
        "value, so twice the 16-bit codes the file holds) and the size ratio, and on request PSNR "
        "and spectral angle against the input.\n\n"
        "Pixels unlike the encoder's training spectra (their principal components and the residual "
        "off them) are counted: the share is a result, and a warning names a scene far from them "
        "(another sensor, product level or scaling), where the reconstruction cannot be trusted.\n\n"
        "The shipped models were trained on simulated spectra (model cards in models_onnx/)."
    )

    def add_task_parameters(self):
        self.add_parameter(
            QgsProcessingParameterEnum(self.RATIO, "Compression ratio", options=[str(r) for r in RATIOS],
                                       defaultValue=1),
            "Bands per latent value: 4, 8, 16 or 32, one shipped model each. Ignored when a model "
            "file is given.",
        )
        self.add_parameter(
            QgsProcessingParameterBoolean(self.QUALITY, "Measure quality (PSNR, spectral angle)", False),
            "Also decompress in memory and compare with the input: PSNR (peak 1.0 reflectance) and "
            "mean spectral angle. Costs a decoder pass.",
        )
        for key, _, description in REPORT:
            self.addOutput(QgsProcessingOutputNumber(key, description))
        self.addOutput(QgsProcessingOutputNumber(
            self.OUT_OF_DISTRIBUTION, "Share of pixels unlike the encoder's training spectra (out of distribution)"))

    def task_request(self, parameters, context):
        return {"ratio": RATIOS[self.parameterAsEnum(parameters, self.RATIO, context)],
                "quality": self.parameterAsBoolean(parameters, self.QUALITY, context)}

    def task_results(self, result):
        """The report's figures; the out-of-distribution share (engine/input_distribution.py: the
        encoder's training spectra on their principal components) where the contract records them."""
        flagged = result.get("out_of_distribution")
        return {key: result.get(field) for key, field, _ in REPORT} | {
            self.OUT_OF_DISTRIBUTION: flagged["share"] if flagged else None}
