"""Review then apply: results land in the document's history and on its locked preview layer; the
user picks one and applies it as a layer (optionally through the selection), discards it, or takes
its prompt and seed back. The history lives in the document (annotation), so it survives a save.

UI-independent like the controller: the docker calls these methods and re-reads `entries()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import document
from ._common import geometry, history, pixels
from .qt import scaled_bgra

ActionError = history.ActionError
Entry = history.Entry


class Review:
    def __init__(self) -> None:
        self._histories: dict[str, history.History] = {}  # by document key
        self.shown: dict[str, str] = {}  # document key -> id of the entry on its preview layer

    # --- per-document history -------------------------------------------------------------------

    def history(self, doc: Any) -> history.History:
        key = document.doc_key(doc) if doc is not None else None
        if key is None:
            return history.History()
        if key not in self._histories:  # first look at a (re)opened document: read what it stored
            self._histories[key] = history.History.from_bytes(document.read_history(doc))
        return self._histories[key]

    def _save(self, doc: Any, hist: history.History) -> None:
        self._histories[document.doc_key(doc, create=True) or ""] = hist
        document.write_history(doc, hist.to_bytes())

    def entries(self, doc: Any) -> list[Entry]:
        return list(self.history(doc))

    def shown_id(self, doc: Any) -> str | None:
        key = document.doc_key(doc) if doc is not None else None
        if key is None or document.find_preview(doc) is None:
            return None
        return self.shown.get(key)

    # --- results in --------------------------------------------------------------------------------

    def add_result(self, doc: Any, request: Any, result: dict[str, Any], base: tuple[int, int]) -> list[Entry]:
        """Store a job's result images as entries and show the first one on the preview layer."""
        new = history.entries_from_result(request, result, base, document.decode_result_image)
        document.doc_key(doc, create=True)
        hist = self.history(doc)
        hist.add(new)
        self._save(doc, hist)
        document.log_params(
            doc, {"job": result.get("id"), "kind": request.kind, "params": new[0].params if new else {}}
        )
        if new:
            self.show(doc, new[0].id)
        return new

    # --- user actions ------------------------------------------------------------------------------

    def show(self, doc: Any, entry_id: str) -> Entry:
        entry = self.history(doc).require(entry_id)
        place = entry.placement(doc.width(), doc.height())
        bgra = pixels.rgba_to_bgra(entry.rgba(_decode))
        rect = place.rect.clamped(doc.width(), doc.height())
        if not place.exact:
            bgra = scaled_bgra(bgra, entry.rect.w, entry.rect.h, place.rect.w, place.rect.h)
        if rect.is_empty:
            document.remove_preview(doc)  # nothing of it lies on the canvas as it is (outpaint strips)
        else:
            document.show_preview(doc, rect, _crop(bgra, place.rect, rect))
        self.shown[document.doc_key(doc) or ""] = entry.id
        return entry

    def hide(self, doc: Any) -> None:
        document.remove_preview(doc)
        self.shown.pop(document.doc_key(doc) or "", None)

    def apply(self, doc: Any, entry_id: str, to_selection: bool = False) -> tuple[bool, Callable[[], Any]]:
        """Start applying the entry as a new layer named `prompt (seed)` (one undo step; a canvas
        change first when the job resized the canvas). `to_selection`: cut to the selection, its
        soft edge kept (the selection is baked into the layer's alpha: still one undo step).

        Checks and takes the preview away now; returns (settle, finish): `finish()` adds the layer
        and returns it. With `settle` the caller must let Krita's event loop run a moment before
        calling it: resizing the image while the canvas still draws the removed preview layer
        aborts Krita 6 (its OpenGL canvas asserts on a stale texture tile)."""
        hist = self.history(doc)
        entry = hist.require(entry_id)
        place = entry.placement(doc.width(), doc.height())  # raises when the document no longer fits
        if to_selection and document.selection_mask(doc) is None:
            raise ActionError("select the area to apply it to first (or use Apply)")
        # The preview goes first: one Undo then takes back exactly the applied layer.
        self.hide(doc)
        doc.waitForDone()

        def finish() -> Any:
            if place.change is not None:
                document.change_canvas(doc, place.change)
            rgba = entry.rgba(_decode)
            if to_selection:
                sel = document.selection_mask(doc) or bytes(doc.width() * doc.height())
                r = entry.rect
                rgba = pixels.mask_alpha(rgba, pixels.crop(sel, doc.width(), 1, r.x, r.y, r.w, r.h))
            node = document.add_layer(doc, entry.name, entry.rect, rgba)
            hist.update(entry.id, applied=True)
            self._save(doc, hist)
            return node

        return place.change is not None, finish

    def discard(self, doc: Any, entry_id: str) -> None:
        hist = self.history(doc)
        if self.shown_id(doc) == entry_id:
            self.hide(doc)
        if hist.discard(entry_id) is not None:
            self._save(doc, hist)

    def reuse(self, doc: Any, entry_id: str, write: Any) -> Entry:
        """Prompt, negative prompt and seed (fixed) of the entry back into the settings (`write`)."""
        entry = self.history(doc).require(entry_id)
        for key, value in history.settings_from(entry).items():
            write(key, value)
        return entry

    def forget_closed(self, open_keys: set[str]) -> None:
        """Drop the in-memory copies of closed documents (their history is in the file)."""
        for key in list(self._histories):
            if key not in open_keys:
                self._histories.pop(key, None)
                self.shown.pop(key, None)


def _decode(data: bytes) -> tuple[int, int, bytes]:
    got = document.decode_png(data)
    return got if got is not None else history.png.decode(data)


def _crop(bgra: bytes, full: geometry.Rect, part: geometry.Rect) -> bytes:
    """`part` (inside `full`, both canvas rects) cut out of `full`-sized BGRA."""
    if part == full:
        return bgra
    inner = part.relative_to(full)
    return pixels.crop(bgra, full.w, 4, inner.x, inner.y, inner.w, inner.h)
