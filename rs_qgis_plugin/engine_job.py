"""One engine request off the GUI thread, for the plugin's own widgets (the search dock, the model
selector): the map and dialogs stay responsive while the engine works."""
from qgis.core import QgsProcessingException, QgsProcessingFeedback
from qgis.PyQt.QtCore import QThread, pyqtSignal


class EngineJob(QThread):
    """Runs ``work(feedback)`` on its own thread; ``succeeded`` carries the engine's result,
    ``failed`` a message worded for users."""

    succeeded = pyqtSignal(object)
    failed = pyqtSignal(str)

    def __init__(self, work, parent=None):
        super().__init__(parent)
        self.work = work
        self.feedback = QgsProcessingFeedback()

    def run(self):
        try:
            self.succeeded.emit(self.work(self.feedback))
        except QgsProcessingException as error:  # engine errors: worded for users
            self.failed.emit(str(error))
        except Exception as error:  # a bug: shown in the widget rather than lost in a thread
            self.failed.emit(f"Unexpected error ({type(error).__name__}: {error}); please report it.")
