"""Krita registration: the Extension with the sdbridge actions, and the docker factory.

Action ids (bind shortcuts in Settings ▸ Configure Krita ▸ Keyboard Shortcuts, or trigger from a
script with `Krita.instance().action("sdbridge_generate").trigger()`):
sdbridge_generate, sdbridge_outpaint, sdbridge_face, sdbridge_restore, sdbridge_upscale, sdbridge_cancel.
"""

from __future__ import annotations

from typing import Any

from krita import DockWidgetFactory, DockWidgetFactoryBase, Extension, Krita  # type: ignore[import-not-found]

from .controller import Controller

ACTIONS: dict[str, str] = {
    "generate": "sdbridge: Generate (selection = inpaint)",
    "outpaint": "sdbridge: Outpaint / extend canvas",
    "face": "sdbridge: Re-render face",
    "restore": "sdbridge: Restore faces",
    "upscale": "sdbridge: Upscale",
    "cancel": "sdbridge: Cancel jobs",
}

CONTROLLER: Controller | None = None


class SDBridgeExtension(Extension):
    def __init__(self, parent: Any, controller: Controller) -> None:
        super().__init__(parent)
        self.controller = controller

    def setup(self) -> None:
        app = Krita.instance()
        # Close the socket cleanly when Krita quits (jobs keep running on the server).
        app.notifier().setActive(True)
        app.notifier().applicationClosing.connect(self.controller.shutdown)

    def createActions(self, window: Any) -> None:
        for kind, text in ACTIONS.items():
            action = window.createAction(f"sdbridge_{kind}", text, "tools/scripts")
            action.triggered.connect(lambda _checked=False, k=kind: self.controller.run_action(k))


def register(deps_error: str | None = None) -> None:
    global CONTROLLER
    from .docker import SDBridgeDocker

    app = Krita.instance()
    CONTROLLER = Controller(deps_error)
    app.addExtension(SDBridgeExtension(app, CONTROLLER))
    app.addDockWidgetFactory(
        DockWidgetFactory("sdbridge_docker", DockWidgetFactoryBase.DockPosition.DockRight, SDBridgeDocker)
    )
