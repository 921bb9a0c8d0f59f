"""Remote Sensing AI Toolbox: a QGIS Processing provider whose algorithms run ONNX models.

The plugin is thin: every algorithm hands its work to the toolbox's engine, which runs in a
separate Python interpreter (see ``worker_client``), so QGIS never imports onnxruntime or rasterio.
"""


def classFactory(iface):  # noqa: N802 (name fixed by QGIS)
    """QGIS entry point; no GUI work here (there is no iface in qgis_process)."""
    from rs_qgis_plugin.plugin import RemoteSensingAIPlugin

    return RemoteSensingAIPlugin(iface)
