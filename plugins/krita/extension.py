"""Krita registration: the Extension with the sdbridge actions, and the docker.

Action ids (bind shortcuts in Settings ▸ Configure Krita ▸ Keyboard Shortcuts, or trigger from a
script with `Krita.instance().action("sdbridge_generate").trigger()`):
sdbridge_generate, sdbridge_outpaint, sdbridge_face, sdbridge_restore, sdbridge_upscale, sdbridge_cancel.
"""

from __future__ import annotations

from typing import Any

from krita import Extension, Krita  # type: ignore[import-not-found]

from .controller import Controller
from .docker import DockerFactory
from .qt import QTimer

ACTIONS: dict[str, str] = {
    "generate": "sdbridge: Generate (selection = inpaint)",
    "outpaint": "sdbridge: Outpaint / extend canvas",
    "face": "sdbridge: Re-render face",
    "restore": "sdbridge: Restore faces",
    "upscale": "sdbridge: Upscale",
    "cancel": "sdbridge: Cancel jobs",
}


class SDBridgeExtension(Extension):
    def __init__(self, parent: Any, controller: Controller) -> None:
        super().__init__(parent)
        self.controller = controller

    def setup(self) -> None:
        app = Krita.instance()
        # Close the socket cleanly when Krita quits (jobs keep running on the server).
        app.notifier().setActive(True)
        app.notifier().applicationClosing.connect(self.controller.shutdown)
        # Once a document is gone (the signal comes while it still is listed), forget its history.
        app.notifier().imageClosed.connect(lambda _name: QTimer.singleShot(0, self.controller.forget_closed_documents))
        # A document opened again: jobs sent for it before Krita restarted are followed again (resume.py).
        app.notifier().viewCreated.connect(lambda _view: QTimer.singleShot(0, self.controller.resume_documents))

    def createActions(self, window: Any) -> None:
        for kind, text in ACTIONS.items():
            action = window.createAction(f"sdbridge_{kind}", text, "tools/scripts")
            action.triggered.connect(lambda _checked=False, k=kind: self.controller.run_action(k))


def register(deps_error: str | None = None) -> Controller:
    """Create the plugin's Controller and hand it to the extension (actions) and the docker factory."""
    app = Krita.instance()
    controller = Controller(deps_error)
    app.addExtension(SDBridgeExtension(app, controller))
    app.addDockWidgetFactory(DockerFactory(controller))
    return controller
