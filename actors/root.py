"""OperatorRoot: one ModuleSupervisor per Module; routes Module and build events to them."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from actors.base import Backoff, OotoActor
from actors.messages import (
    BuildObserved,
    ChildDied,
    ModuleChanged,
    ModuleGone,
    ModuleObserved,
    ModuleUnreadable,
    PreflightChanged,
    PreflightObserved,
)
from actors.ports import ActorContext, Obj
from actors.preflight import PreflightActor
from actors.supervisor import ModuleSupervisor
from ooto.domain.api import Module
from ooto.domain.api.preflight import PreflightValidation
from ooto.domain.kernels import label_safe
from ooto.domain.module_labels import label_rival, rival_message
from ooto.domain.reasons import Reason
from ooto.logs import log_fields

log = logging.getLogger(__name__)


def validation_message(error: ValidationError) -> str:
    """`spec.kernelMappings[0].containerImage: Field required`-style lines, one per problem."""
    lines = []
    for item in error.errors():
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"]).lstrip(".")
        lines.append(f"{path}: {item['msg']}")
    return "; ".join(lines)


class OperatorRoot(OotoActor):
    def __init__(self, context: ActorContext, tracker: Any) -> None:
        super().__init__(context.bridge)
        self._context, self._io, self._tracker = context, context.io, tracker
        self._supervisors: dict[str, Any] = {}
        self._modules: dict[str, Module] = {}  # the newest of each, to replace a dead supervisor
        self._respawns: dict[str, Backoff] = {}
        self._preflights: dict[str, Any] = {}
        self._validations: dict[str, PreflightValidation] = {}  # newest, to replace a dead actor
        self._refused: dict[str, Obj] = {}  # Modules an older one's label value keeps from running

    def on_stop(self) -> None:
        for ref in [*self._supervisors.values(), *self._preflights.values()]:
            ref.stop(block=False)

    def on_ModuleObserved(self, event: ModuleObserved) -> None:
        meta = event.module.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        if event.type == "DELETED" or meta.get("deletionTimestamp"):
            self._refused.pop(key, None)
            self._forget(key, meta)
            self._reconsider(str(meta.get("namespace")))
            return
        try:
            module = Module.model_validate(event.module)
        except ValidationError as error:
            self._unreadable(key, event.module, validation_message(error))
            return
        except RecursionError:
            self._unreadable(key, event.module, "the Module is nested too deeply to be read")
            return
        rival = label_rival(event.module, self._io.modules.list())
        if rival is not None:
            self._refuse(key, event.module, rival)
            return
        self._refused.pop(key, None)
        self._modules[key] = module
        supervisor = self._supervisors.get(key)
        if supervisor is None:
            if not self.timer_pending(f"respawn:{key}"):
                log.info("module %s appeared", key, extra=log_fields(module=key, reason="added"))
                self._start_supervisor(key, module)
                self._refuse_younger(event.module)
        else:
            self.send(supervisor, ModuleChanged(module))

    def _refuse(self, key: str, raw: Obj, rival: str) -> None:
        """Nothing runs for a Module whose label value an older one has (ooto.module_labels)."""
        self._refused[key] = raw
        self._modules.pop(key, None)
        self.cancel_timer(f"respawn:{key}")
        supervisor = self._supervisors.pop(key, None)
        if supervisor is not None:  # it started before the older Module was seen
            supervisor.stop(block=False)
        self._unreadable(key, raw, rival_message(str(raw["metadata"]["name"]), rival))

    def _refuse_younger(self, raw: Obj) -> None:
        """Stop a younger rival of a Module seen only now (a restart lists Modules in any order)."""
        mine = raw.get("metadata") or {}
        namespace, value = mine.get("namespace"), label_safe(str(mine.get("name") or ""))
        cached = self._io.modules.list()
        for other in cached:
            meta = other.get("metadata") or {}
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            if meta.get("namespace") != namespace or key not in self._supervisors:
                continue
            if meta.get("name") != mine.get("name") and label_safe(meta["name"]) == value:
                rival = label_rival(other, cached)
                if rival is not None:
                    self._refuse(key, other, rival)

    def _reconsider(self, namespace: str) -> None:
        """A Module of `namespace` went: a Module refused for its label value may run now."""
        for key, raw in list(self._refused.items()):
            if key.partition("/")[0] == namespace:
                del self._refused[key]
                self.on_ModuleObserved(ModuleObserved("MODIFIED", raw))

    def _start_supervisor(self, key: str, module: Module) -> None:
        self._supervisors[key] = ModuleSupervisor.start(
            self._context, self._tracker, module, self.actor_ref
        )

    def on_ChildDied(self, message: ChildDied) -> None:
        """A supervisor or preflight actor died: start a new one from the newest object after a
        backoff."""
        key = message.key
        if self._preflights.get(key) == message.ref:
            self._preflight_died(key, message.error)
            return
        if self._supervisors.get(key) != message.ref:
            return
        del self._supervisors[key]
        settings = self._context.settings
        backoff = self._respawns.setdefault(
            key, Backoff(settings.backoff_initial_seconds, settings.backoff_max_seconds)
        )
        delay = backoff.next_delay()
        log.error(
            "module %s: its supervisor died (%s); restarting it in %.0fs",
            key,
            message.error,
            delay,
            extra=log_fields(module=key, reason=Reason.ACTOR_FAILED),
        )
        self.set_timer(f"respawn:{key}", delay)

    def on_timer(self, name: str) -> None:
        if name.startswith("preflight:"):
            self._respawn_preflight(name.partition(":")[2])
            return
        key = name.partition(":")[2]
        module = self._modules.get(key)
        if module is not None and key not in self._supervisors:
            self._start_supervisor(key, module)

    def _unreadable(self, key: str, raw: Obj, error: str) -> None:
        supervisor = self._supervisors.get(key)
        if supervisor is not None:
            self.send(supervisor, ModuleUnreadable(raw, error))
            return
        log.warning(
            "module %s is unreadable: %s",
            key,
            error,
            extra=log_fields(module=key, reason=Reason.INVALID_SPEC),
        )
        meta = raw.get("metadata") or {}
        if _already_reported(raw, error):
            return
        self._io.record_event(raw, "Warning", Reason.INVALID_SPEC, error)
        self.bridge.run(
            self.actor_ref,
            ("status", key),
            self._io.patch_module_status(
                meta.get("namespace", ""), meta.get("name", ""), _unreadable_status(raw, error)
            ),
        )

    def on_IoDone(self, done: Any) -> None:
        if not done.ok:
            log.warning("status write for %s failed: %s", done.tag[1], done.error)

    def _forget(self, key: str, meta: Obj) -> None:
        self._modules.pop(key, None)
        self._respawns.pop(key, None)
        self.cancel_timer(f"respawn:{key}")
        supervisor = self._supervisors.pop(key, None)
        if supervisor is not None:
            log.info(
                "module %s deleted: stopping its actors",
                key,
                extra=log_fields(module=key, reason="deleted"),
            )
            self.send(supervisor, ModuleGone())
            supervisor.stop(block=False)

    def on_BuildObserved(self, event: BuildObserved) -> None:
        # One build serves every Module of the namespace that needs its image (the backend adopts
        # it across Modules), so every supervisor there hears it; kernel actors filter by image.
        namespace = (event.build.get("metadata") or {}).get("namespace", "")
        for key, supervisor in self._supervisors.items():
            if key.partition("/")[0] == namespace:
                self.send(supervisor, event)
        for preflight in self._preflights.values():  # few, and each filters by its own images
            self.send(preflight, event)

    def on_PreflightObserved(self, event: PreflightObserved) -> None:
        meta = event.validation.get("metadata") or {}
        name = str(meta.get("name", ""))
        if event.type == "DELETED" or meta.get("deletionTimestamp"):
            self._validations.pop(name, None)
            self._respawns.pop(f"preflight:{name}", None)
            self.cancel_timer(f"preflight:{name}")
            actor = self._preflights.pop(name, None)
            if actor is not None:
                log.info("preflight %s deleted: stopping its work", name)
                actor.stop(block=False)
            return
        try:
            validation = PreflightValidation.model_validate(event.validation)
        except ValidationError as error:  # the schema makes this rare: say so, do nothing
            log.warning("preflight %s is unreadable: %s", name, validation_message(error))
            return
        self._validations[name] = validation
        actor = self._preflights.get(name)
        if actor is not None:
            self.send(actor, PreflightChanged(validation))
        elif not self.timer_pending(f"preflight:{name}"):
            log.info("preflight %s appeared", name, extra=log_fields(reason="added"))
            self._start_preflight(name)

    def _start_preflight(self, name: str) -> None:
        validation = self._validations[name]
        self._preflights[name] = PreflightActor.start(self._context, validation, self.actor_ref)

    def _preflight_died(self, name: str, error: str) -> None:
        del self._preflights[name]
        settings = self._context.settings
        backoff = self._respawns.setdefault(
            f"preflight:{name}",
            Backoff(settings.backoff_initial_seconds, settings.backoff_max_seconds),
        )
        delay = backoff.next_delay()
        log.error(
            "preflight %s: its actor died (%s); restarting it in %.0fs",
            name,
            error,
            delay,
            extra=log_fields(reason=Reason.ACTOR_FAILED),
        )
        self.set_timer(f"preflight:{name}", delay)

    def _respawn_preflight(self, name: str) -> None:
        if name in self._validations and name not in self._preflights:
            self._start_preflight(name)


def _already_reported(raw: Obj, error: str) -> bool:
    """Our own status write comes back as an event: never answer it with another write."""
    status = raw.get("status") or {}
    generation = (raw.get("metadata") or {}).get("generation", 0)
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(
                condition.get("reason") == Reason.INVALID_SPEC
                and condition.get("message") == error[:1024]
                and condition.get("observedGeneration") == generation
            )
    return False


def _unreadable_status(raw: Obj, error: str) -> dict[str, Any]:
    from datetime import UTC, datetime

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    generation = (raw.get("metadata") or {}).get("generation", 0)
    condition = {
        "status": "False",
        "reason": Reason.INVALID_SPEC,
        "message": error[:1024],
        "observedGeneration": generation,
        "lastTransitionTime": now,
    }
    return {
        "conditions": [{"type": "Progressing", **condition}, {"type": "Ready", **condition}],
        "observedGeneration": generation,
    }
