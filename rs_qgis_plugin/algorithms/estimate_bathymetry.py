"""Processing algorithm: water depth from multispectral imagery (satellite-derived bathymetry)."""
from rs_qgis_plugin.algorithms.raster_model_algorithm import RasterModelAlgorithm


class EstimateBathymetry(RasterModelAlgorithm):
    task = "estimate_bathymetry"
    model_tasks = ("bathymetry",)
    over_water = True
    default_model = "bathymetry_s2_sim.onnx"
    output_description = "Depth"
    output_help = (
        "GeoTIFF of the estimated water depth in the model's units (metres for the shipped model), "
        "on the input's grid (the model's grid when resampled); pixels without valid input are "
        "nodata. Loaded with a colour ramp labelled in metres."
    )

    display_name = "Estimate bathymetry"
    group_name, group_id = "Coastal and marine", "coastal_marine"
    help_text = (
        "Estimates water depth in shallow, clear water from a multispectral image "
        "(satellite-derived bathymetry) with an ONNX regression model.\n\n"
        "The model's contract says which bands it needs (the shipped model: Sentinel-2 visible "
        "bands as surface reflectance x 10000), how to normalise them and how to tile the "
        "image; the engine checks the input against it and says what is missing. The shipped "
        "model was trained on simulated scenes (see its model card in models_onnx/); "
        "train your own with the toolbox's training code for real surveys.\n\n"
        "The work runs in the engine's Python interpreter (Processing settings)."
    )
