"""Checkpoints kept loaded between jobs: a device tier and a RAM tier, each within a byte budget, LRU.

A model asked for is brought to the device tier (loaded from its file, or copied back from the
RAM tier). Making room pushes the least recently used device models to the RAM tier (dropping
the least recently used RAM models when that is full, or the pushed model itself when it is
larger than the RAM tier), so switching back costs a host-to-device copy, not a disk read. The
models a job has asked for stay on the device until it ends, as long as they fit together: an
SDXL base and its refiner share the device, and the next base+refiner job loads nothing. Only
when they cannot fit is a model in use pushed out, least recently used first. A model alone over
the budget still loads (the job needs it); it just evicts everything else.

Per-job changes (LoRA patches, VAE override) are reverted on every model the job used when it
ends (`end_job`), and on a model as it leaves the device, so nothing leaks into another job or
model and the RAM tier only ever holds checkpoints as loaded.
Entries are keyed by name and the file's stamp: a file replaced on disk loads again.

Thread safety: `get`/`end_job` run on the worker; `on_device`/`resident` are answered from an
immutable snapshot replaced under the lock, so the event loop never waits for a load.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Literal

import torch

from .cache import module_bytes
from .loader import LoadedModel

log = logging.getLogger(__name__)
Tier = Literal["device", "ram"]


@dataclass
class Slot:
    key: str
    model: LoadedModel
    stamp: Hashable
    nbytes: int
    tier: Tier = "device"


def model_bytes(model: LoadedModel) -> int:
    """Bytes of every loaded component (the per-job VAE override included while it is cached)."""
    parts = [model.unet, model.vae, *model.text_encoders]
    override = model.extras.get("vae_override")
    if override is not None:
        parts.append(override[2])
    return sum(module_bytes(m) for m in parts)


def move(model: LoadedModel, device: torch.device) -> None:
    """Every component to `device` (dtypes unchanged); a cached VAE override is dropped, not moved."""
    model.extras.pop("vae_override", None)
    for m in (model.unet, model.vae, *model.text_encoders):
        if next(m.parameters()).device != device:  # on a CPU server both tiers are RAM: nothing to do
            m.to(device)


class ModelCache:
    def __init__(
        self,
        device: torch.device,
        device_budget: int,
        ram_budget: int,
        on_release: Callable[[LoadedModel], None] | None = None,
    ) -> None:
        self.device = device
        self.on_release = on_release  # before a model leaves the device (what was built for it there goes)
        self.device_budget = device_budget
        self.ram_budget = ram_budget
        self._slots: OrderedDict[str, Slot] = OrderedDict()  # least recently used first
        self._job: dict[int, LoadedModel] = {}  # models the running job asked for (by id)
        self._lock = threading.Lock()
        self._snapshot: tuple[tuple[str, Tier], ...] = ()
        self.loads = 0  # models read from their files (for tests and benchmarks)

    # --- worker side ---------------------------------------------------------------------------------

    def get(
        self, key: str, stamp: Hashable, load: Callable[[], LoadedModel], estimate: Callable[[], int]
    ) -> LoadedModel:
        """The model for `key` on the device: cached, copied back from RAM, or `load()`ed (`estimate()`
        bytes, asked only then)."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None and slot.stamp != stamp:
                log.info("%s changed on disk: loading it again", key)
                self._drop(slot)
                slot = None
            if slot is None:
                self._make_room(estimate(), keep=key)
                model = load()
                self.loads += 1
                slot = Slot(key, model, stamp, model_bytes(model))
                self._slots[key] = slot
                self._make_room(0, keep=key)  # the estimate may have been short
            elif slot.tier == "ram":
                slot.tier = "device"  # counted on the device now, so making room never evicts it from RAM
                self._make_room(0, keep=key)
                move(slot.model, self.device)
            self._slots.move_to_end(key)
            self._job[id(slot.model)] = slot.model
            self._publish()
            return slot.model

    def end_job(self) -> None:
        """Revert the per-job changes of every model the job used; they may be evicted from now on."""
        with self._lock:
            for model in self._job.values():
                model.undo_job_changes()
            self._job.clear()
            for slot in self._slots.values():  # a VAE override cached during the job now counts
                slot.nbytes = model_bytes(slot.model)
            self._make_room(0, keep=next(reversed(self._slots), None))  # the last one used stays
            self._publish()

    def clear(self) -> None:
        with self._lock:
            for slot in list(self._slots.values()):
                self._drop(slot)
            self._publish()

    # --- any thread ----------------------------------------------------------------------------------

    def on_device(self, key: str) -> bool:
        return any(k == key and tier == "device" for k, tier in self._snapshot)

    def resident(self) -> tuple[tuple[str, Tier], ...]:
        """(key, tier) of every cached model, most recently used first."""
        return self._snapshot

    def used(self, tier: Tier) -> int:
        return sum(s.nbytes for s in self._slots.values() if s.tier == tier)

    # --- internals (lock held) -----------------------------------------------------------------------

    def _make_room(self, need: int, keep: str | None = None) -> None:
        """Push device models other than `keep` out, unused ones first, until `need` more bytes fit."""
        while self.used("device") + need > self.device_budget:
            candidates = [s for s in self._slots.values() if s.tier == "device" and s.key != keep]
            if not candidates:
                return  # only the model being brought in is left: it runs alone, over budget
            idle = [s for s in candidates if id(s.model) not in self._job]
            self._demote((idle or candidates)[0])

    def _demote(self, slot: Slot) -> None:
        # A model leaves the device only once the job is done with it (a base after its refiner
        # took over): its per-job changes go now, so the copy kept in RAM is the checkpoint as loaded.
        slot.model.undo_job_changes()
        if self.on_release is not None:
            self.on_release(slot.model)
        if slot.nbytes > self.ram_budget:
            self._drop(slot)
            return
        while self.used("ram") + slot.nbytes > self.ram_budget:
            self._drop(next(s for s in self._slots.values() if s.tier == "ram"))
        move(slot.model, torch.device("cpu"))
        slot.tier = "ram"
        slot.nbytes = model_bytes(slot.model)
        log.info("%s moved to the RAM cache", slot.key)

    def _drop(self, slot: Slot) -> None:
        del self._slots[slot.key]
        if self.on_release is not None and slot.tier == "device":
            self.on_release(slot.model)
        log.info("%s unloaded", slot.key)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _publish(self) -> None:
        self._snapshot = tuple((s.key, s.tier) for s in reversed(self._slots.values()))
