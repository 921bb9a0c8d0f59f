"""The Processing dialogs' widget for the MODEL parameters: the model selector (model_selector.py)
through QGIS's documented mechanism for custom parameter widgets, the parameter metadata
``{'widget_wrapper': {'class': ...}}`` read by QGIS's Python dialogs (QGIS 3.x and 4.0), which
build the class as ``class(parameter, dialog, row, column, **metadata)``. Only those dialogs import
this module; qgis_process and scripts never do.
"""
from processing.gui.wrappers import WidgetWrapper
from qgis.gui import QgsGui
from qgis.PyQt.QtCore import pyqtSlot

from rs_qgis_plugin.model_selector import ModelSelector


class ModelSelectorWrapper(WidgetWrapper):
    """The selector in the algorithm and batch dialogs; its value is the chosen model's path."""

    def createWidget(self, tasks=(), other_tasks_except=None, default_model=""):  # noqa: N802 (QGIS API)
        selector = ModelSelector(tasks, other_tasks_except, default_model)
        selector.valueChanged.connect(self.value_changed)
        return selector

    def setValue(self, value):  # noqa: N802 (QGIS API)
        self.widget.set_value(value)

    def value(self):
        return self.widget.value()

    @pyqtSlot()
    def value_changed(self) -> None:
        self.widgetValueHasChanged.emit(self)


class ModelParameterWidget:
    """What the MODEL parameters' metadata names: the selector in the algorithm and batch dialogs; in
    the modeler, the modeler's own widget of a plain file parameter, which also takes MODEL from the
    model's inputs and other algorithms' outputs."""

    def __new__(cls, parameter, dialog, row=0, column=0, **selector_options):
        if type(dialog).__name__ != "ModelerParametersDialog":
            return ModelSelectorWrapper(parameter, dialog, row, column, **selector_options)
        plain = parameter.clone()
        plain.setMetadata({})
        widget = QgsGui.processingGuiRegistry().createModelerParameterWidget(
            dialog.model, dialog.childId, plain, dialog.context)
        widget.plain_parameter = plain  # the widget refers to it
        return widget
