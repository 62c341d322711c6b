"""Where each notification is rendered: default and service-wide templates in the daemon's
process, an account's own templates and SMS text in the render pool, within their limits."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any, Final

from cachetools import LRUCache

from gateway.errors import PermanentFailure
from gateway.settings import TemplatesSettings
from outbound import render_child
from outbound.render_pool import OverLimit, RenderPool, TaskLimits, megabytes
from outbound.rendering import PARTS, OutputOverLimit, Rendered, Renderer

# Modules the pool's processes need, loaded once by the fork server.
POOL_PRELOAD: Final = (render_child.__name__,)
# Tells the pool's processes that the templates were reloaded (their files are read again).
_GENERATIONS = itertools.count(1)
# Templates over a limit remembered at most: an account that keeps changing its SMS text
# (each costing a render up to a limit) cannot grow the daemon without end.
_REMEMBERED: Final = 10_000


class TemplateOverLimit(PermanentFailure):
    """An account's template or SMS text that went over a limit: its job goes to the dead
    letters, and the same template fails at once until the templates are reloaded."""


class OwnerTemplates:
    """Renders notifications for the daemon. Accounts without a folder of their own use the
    default and service-wide templates, the administrator's, rendered here at once; the
    templates an account's owner wrote run in the render pool, one at a time per account,
    under `[templates]`'s limits. One generation of the templates: a reload makes another."""

    def __init__(
        self, renderer: Renderer, pool: RenderPool, settings: Callable[[], TemplatesSettings]
    ) -> None:
        self.renderer = renderer
        self.pool = pool
        self.settings = settings
        self.generation = next(_GENERATIONS)
        # Templates that went over a limit, and why: a backlog of one account's jobs costs
        # one time limit, not one each. Forgotten with this object, at the next reload.
        self._over: LRUCache[tuple[str, ...], str] = LRUCache(maxsize=_REMEMBERED)

    async def render(
        self, kind: str, locale: str, context: Mapping[str, Any], account_id: str
    ) -> Rendered:
        """Subject, text and HTML of `kind` for that account; RenderError if a part fails,
        TemplateOverLimit if one goes over a limit."""
        if not self.renderer.has_own_templates(account_id):
            return self.renderer.render(kind, locale, context, account_id)
        prefix = self.renderer.prefix(kind, locale, account_id)
        values = dict(context)
        parts: list[str | None] = []
        async with self.pool.turn(account_id):
            for part in PARTS:
                file = f"{kind}.{part}"
                parts.append(
                    await self._run(
                        (account_id, prefix, file),
                        f"template {file} of account {account_id}",
                        render_child.render_part,
                        self.renderer.templates_dir,
                        self.generation,
                        prefix,
                        kind,
                        part,
                        values,
                    )
                )
        return Rendered.of(*parts)

    async def render_text(self, account_id: str, source: str, variables: Mapping[str, Any]) -> str:
        """An account's own SMS text rendered; Jinja's errors as they come, TemplateOverLimit
        if it goes over a limit."""
        async with self.pool.turn(account_id):
            # Keyed by its source too: an account.upsert may change it without a reload.
            text: str = await self._run(
                ("sms", account_id, source),
                f"the SMS text of account {account_id}",
                render_child.render_text,
                source,
                dict(variables),
            )
            return text

    async def _run(
        self, key: tuple[str, ...], what: str, function: Callable[..., Any], *args: Any
    ) -> Any:
        known = self._over.get(key)
        if known is not None:
            raise TemplateOverLimit(known)
        settings = self.settings()
        limits = TaskLimits(settings.render_time.total_seconds(), settings.render_memory)
        try:
            return await self.pool.run(function, (*args, settings.max_output), limits)
        except OverLimit as exc:
            problem = exc.problem
        except OutputOverLimit:
            problem = f"output over {megabytes(settings.max_output)}"
        self._over[key] = f"{what}: {problem}"
        raise TemplateOverLimit(self._over[key])
