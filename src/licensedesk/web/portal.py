"""/admin: the admin portal (SPEC section 6), server-rendered with Jinja2 and enhanced with htmx.

Every page calls the same service functions as the API, after the same role check (auth/roles.py
PERMISSIONS) for the session's principal. Every page reads without JavaScript; htmx only spares reloads
(as-you-type search, live "needs N, M available", processing states that update themselves).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData, UploadFile

from licensedesk.api.deps import acting
from licensedesk.audit import service as audit
from licensedesk.auth.roles import Principal
from licensedesk.billing import service as billing
from licensedesk.catalog import service as catalog
from licensedesk.context import Context
from licensedesk.directory import service as directory
from licensedesk.errors import DomainError, NotFound, ValidationFailed
from licensedesk.licensing import service as licensing
from licensedesk.tenancy import service as tenancy
from licensedesk.web import oidc_sign_in, sessions
from licensedesk.web.sessions import Session, Signer

log = logging.getLogger("licensedesk.web")
HERE = Path(__file__).parent
HTMX = "htmx-2.0.11.min.js"  # htmx.org 2.0.11 from the npm registry, BSD Zero-Clause licensed
PAGE_SIZE = 50
SEARCH_RESULTS = 20
ACTIVE_STATES = ("Queued", "InProgress")

templates = Environment(
    loader=FileSystemLoader(HERE / "templates" / "admin"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "—"


templates.filters["when"] = _when
templates.filters["day"] = lambda value: value.strftime("%Y-%m-%d") if value else "—"


def _page_url(request: Request, cursor: str | None) -> str:
    """This page's address with another cursor (paging keeps every filter)."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("cursor", "done")]
    if cursor:
        params.append(("cursor", cursor))
    return request.url.path + ("?" + urlencode(params) if params else "")


templates.globals["page_url"] = _page_url


# ---------------------------------------------------------------- refusals the portal shows as pages


class SignInRequired(Exception):
    pass


class PortalRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sentence(exc: DomainError) -> str:
    """A refusal as a sentence for people (the API's problem documents carry the same facts)."""
    extra = exc.extra
    if exc.code == "not_enough_licenses":
        return (
            f"This needs {extra['needed']} licenses, but only {extra['available']} are available. "
            "Buy more, unassign some, or tick “Assign as many as possible”: the others then wait "
            "and get a license as soon as one is free."
        )
    if exc.code == "quantity_below_assigned":
        return (
            f"The plan would have {extra['seats']} licenses, but {extra['assigned']} are assigned. "
            "Unassign licenses first: a quantity below what is assigned is refused, so that nobody "
            "loses a license by surprise."
        )
    if exc.code == "license_inherited":
        names = ", ".join(g["displayName"] for g in extra.get("groups", []))
        return (
            f"This license comes only through the group{'s' if ',' in names else ''} {names}; "
            "remove it on the group (or take the user out of the group) instead."
        )
    detail = exc.detail
    return detail[:1].upper() + detail[1:] + ("" if detail.endswith(".") else ".")


class PortalRoute(APIRoute):
    """Turns refusals into pages (or, for htmx requests, into a redirect or a message fragment)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            htmx = request.headers.get("hx-request") == "true"
            try:
                return await handler(request)
            except SignInRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                url = "/admin/sign-in" + (f"?next={quote(target)}" if request.method == "GET" else "")
                response: Response
                if htmx:
                    response = Response(status_code=204, headers={"HX-Redirect": url})
                else:
                    response = RedirectResponse(url, status_code=303)
                response.delete_cookie(sessions.COOKIE, path="/admin")
                return response
            except PortalRefused as exc:
                return _message(request, exc.status, exc.message, htmx)
            except DomainError as exc:
                return _message(request, exc.status, sentence(exc), htmx)

        return route


def _message(request: Request, status: int, message: str, htmx: bool) -> Response:
    titles = {403: "Not allowed", 404: "Not found", 409: "Refused", 422: "Check the values"}
    name = "_message.html" if htmx else "message.html"
    admin = getattr(request.state, "admin", None)
    return _render(request, admin, name, status=status, title=titles.get(status, "Refused"), message=message)


router = APIRouter(prefix="/admin", include_in_schema=False, route_class=PortalRoute)


# ---------------------------------------------------------------- the signed-in admin


@dataclass
class Admin:
    session: Session
    principal: Principal
    ctx: Context  # acting as the admin
    tenant_id: str
    tenant_name: str
    csrf: str

    def may(self, permission: str) -> bool:
        return self.principal.may(permission)

    def require(self, permission: str) -> None:
        if not self.may(permission):
            raise PortalRefused(403, "Your role does not allow this.")


def signer(request: Request) -> Signer:
    state = request.app.state
    existing: Signer | None = getattr(state, "portal_signer", None)
    if existing is None:
        existing = Signer(sessions.signing_key(state.ctx, state.settings.secret_key))
        state.portal_signer = existing
    return existing


def _base_ctx(request: Request) -> Context:
    from licensedesk.api.middleware import request_id_var

    ctx: Context = request.app.state.ctx
    return ctx.as_actor(ctx.actor, request_id_var.get())


async def admin(request: Request, *, write: bool = False) -> Admin:
    """The signed-in admin of this request; every form post must carry the session's CSRF token."""
    ctx = _base_ctx(request)
    sign = signer(request)
    session = sign.loads(request.cookies.get(sessions.COOKIE), ctx.clock.now())
    if session is None:
        raise SignInRequired()
    principal = sessions.session_principal(ctx, session)
    if principal is None:
        raise SignInRequired()
    try:
        tenant = tenancy.get_tenant(ctx, session.tenant_id)
    except NotFound:
        raise SignInRequired() from None
    found = Admin(
        session, principal, acting(ctx, principal), tenant.id, tenant.name, sign.csrf_token(session)
    )
    request.state.admin = found
    if write:
        if not _same_origin(request):
            raise PortalRefused(403, "This form came from another site.")
        form = await request.form()
        sent = request.headers.get("x-csrf-token") or form.get("csrf_token")
        if not sign.csrf_ok(session, sent if isinstance(sent, str) else None):
            raise PortalRefused(
                403, "This form has expired or did not come from this site. Reload and retry."
            )
    return found


def _same_origin(request: Request) -> bool:
    """Browsers name the page a form was posted from; a post from another site is refused outright (the
    CSRF token refuses it too; this also covers the sign-in form, which has no session to tie a token to)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or str(request.app.state.settings.public_url).startswith("https:")


def _set_session(request: Request, response: Response, session: Session) -> None:
    response.set_cookie(
        sessions.COOKIE,
        signer(request).dumps(session),
        max_age=int(sessions.SESSION_LIFETIME.total_seconds()),
        path="/admin",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )


HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


def _render(
    request: Request, admin: Admin | None, name: str, *, status: int = 200, **values: Any
) -> Response:
    body = templates.get_template(name).render(
        request=request, admin=admin, htmx=HTMX, path=request.url.path, **values
    )
    return HTMLResponse(body, status_code=status, headers=HEADERS)


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/admin") and not value.startswith("//") and "\\" not in value:
        return value
    return "/admin/licenses"


def _form_str(form: FormData, name: str, max_length: int = 400) -> str:
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    if len(value) > max_length:
        raise ValidationFailed(f"{name} is too long", field=name)
    return value.strip()


def _form_list(form: FormData, name: str, max_items: int = 1000) -> list[str]:
    values = [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]
    if len(values) > max_items:
        raise ValidationFailed(f"at most {max_items} {name}", field=name)
    return list(dict.fromkeys(v[:320] for v in values))


# ---------------------------------------------------------------- static files


@router.get("/static/admin.css")
def stylesheet() -> FileResponse:
    return FileResponse(HERE / "static" / "admin.css", media_type="text/css")


@router.get(f"/static/{HTMX}")
def htmx_file() -> FileResponse:
    return FileResponse(
        HERE / "static" / HTMX,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )


# ---------------------------------------------------------------- sign-in and sign-out


@router.get("")
@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/admin/licenses", status_code=303)


@router.get("/sign-in")
def sign_in_page(request: Request, next: str | None = None) -> Response:
    return _render(
        request, None, "sign_in.html", next=_safe_next(next), error=None, tenant="", oidc_tenant=""
    )


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    if not _same_origin(request):
        raise PortalRefused(403, "This form came from another site.")
    form = await request.form()
    nxt = _safe_next(_form_str(form, "next", 2000))
    tenant = _form_str(form, "tenant", 100)
    ctx = _base_ctx(request)
    try:
        session = sessions.sign_in_with_token(ctx, _form_str(form, "token", 200), tenant or None)
    except ValidationFailed as exc:
        return _render(request, None, "sign_in.html", status=401, next=nxt, error=exc.detail, tenant=tenant)
    response = RedirectResponse(nxt, status_code=303)
    _set_session(request, response, session)
    return response


LINK_COOKIE = "ld_link"
LINK_PATH = "/admin/sign-in/link"
LINK_SPENT = (
    "This sign-in link has been used or has expired. "
    "Sign in with a token, or restart the demo for a new link."
)


def _link_spent(request: Request) -> Response:
    return _render(
        request, None, "sign_in.html", status=401, next="/admin/licenses", tenant="", error=LINK_SPENT
    )


@router.get("/sign-in/link")
def sign_in_link_page(request: Request, code: str = "") -> Response:
    """A one-time sign-in link (printed by `serve --demo`) opens a page that asks first: link previewers and
    scanners fetch links, and must not use it up. Only the button (a POST) signs in."""
    code = code[:200]
    link = sessions.sign_in_link(_base_ctx(request), code)
    if link is None:
        return _link_spent(request)
    # the form's CSRF token is tied to a random cookie that another site can neither read nor set
    nonce = secrets.token_urlsafe(18)
    response = _render(
        request,
        None,
        "sign_in_link.html",
        link=link,
        code=code,
        csrf=signer(request).form_token(nonce, "link"),
    )
    response.set_cookie(
        LINK_COOKIE,
        nonce,
        max_age=int(sessions.LINK_LIFETIME.total_seconds()),
        path=LINK_PATH,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    return response


@router.post("/sign-in/link")
async def sign_in_with_link(request: Request) -> Response:
    if not _same_origin(request):
        raise PortalRefused(403, "This form came from another site.")
    form = await request.form()
    sent = form.get("csrf_token")
    if not signer(request).form_token_ok(
        request.cookies.get(LINK_COOKIE), sent if isinstance(sent, str) else None, "link"
    ):
        raise PortalRefused(
            403, "This form has expired or did not come from this site. Open the sign-in link again."
        )
    session = sessions.redeem_sign_in_link(_base_ctx(request), _form_str(form, "code", 200))
    if session is None:
        return _link_spent(request)
    response = RedirectResponse("/admin/licenses", status_code=303)
    response.delete_cookie(LINK_COOKIE, path=LINK_PATH)
    _set_session(request, response, session)
    return response


OIDC_COOKIE = "ld_oidc"
OIDC_PATH = "/admin/sign-in/oidc"


def _sign_in_refused(request: Request, message: str, tenant: str = "") -> Response:
    return _render(
        request,
        None,
        "sign_in.html",
        status=401,
        next="/admin/licenses",
        tenant="",
        oidc_tenant=tenant,
        error=message,
    )


@router.get("/sign-in/oidc")
def oidc_start(request: Request, tenant: str = "") -> Response:
    """Sign in through the tenant's identity provider (authorization code + PKCE)."""
    tenant = tenant.strip()[:100]
    if not tenant:
        return _sign_in_refused(request, "Name your tenant to sign in with its identity provider.")
    redirect_uri = str(request.base_url).rstrip("/") + OIDC_PATH + "/callback"
    try:
        url, pending = oidc_sign_in.start(
            _base_ctx(request), request.app.state.settings, tenant, redirect_uri
        )
    except oidc_sign_in.SignInRefused as exc:
        return _sign_in_refused(request, str(exc), tenant)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        OIDC_COOKIE,
        signer(request).dumps_data("oidc", pending),
        max_age=int(oidc_sign_in.PENDING_LIFETIME.total_seconds()),
        path=OIDC_PATH,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    return response


@router.get("/sign-in/oidc/callback")
def oidc_callback(request: Request, code: str = "", state: str = "", error: str = "") -> Response:
    ctx = _base_ctx(request)
    pending = signer(request).loads_data("oidc", request.cookies.get(OIDC_COOKIE))
    try:
        if error:
            raise oidc_sign_in.SignInRefused("Your identity provider did not sign you in; start again.")
        principal = oidc_sign_in.finish(
            ctx, request.app.state.settings, request.app.state.jwks, pending, code[:2000], state[:200]
        )
    except oidc_sign_in.SignInRefused as exc:
        response = _sign_in_refused(request, str(exc))
        response.delete_cookie(OIDC_COOKIE, path=OIDC_PATH)
        return response
    session = sessions.sign_in_user(ctx, principal)
    response = RedirectResponse("/admin/licenses", status_code=303)
    response.delete_cookie(OIDC_COOKIE, path=OIDC_PATH)
    _set_session(request, response, session)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    me = await admin(request, write=True)
    sessions.signed_out(me.ctx, me.session)
    response = RedirectResponse("/admin/sign-in", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/admin")
    return response


# ---------------------------------------------------------------- licenses and plans


@router.get("/licenses")
async def licenses_page(request: Request) -> Response:
    me = await admin(request)
    me.require("licenses.read")
    rows = licensing.licenses_overview(me.ctx, me.tenant_id)
    return _render(request, me, "licenses.html", rows=rows, section="licenses")


TABS = ("users", "groups", "subscriptions")


def _plan_page(
    request: Request,
    me: Admin,
    plan_id: str,
    *,
    tab: str = "users",
    cursor: str | None = None,
    state: str | None = None,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    me.require("licenses.read")
    if tab not in TABS:
        tab = "users"
    row = licensing.license_overview(me.ctx, me.tenant_id, plan_id)
    values: dict[str, Any] = {"row": row, "tab": tab, "error": error, "notice": notice, "section": "licenses"}
    groups_page = licensing.plan_groups(me.ctx, me.tenant_id, row.plan_id, limit=PAGE_SIZE)
    values["pending"] = any(g.processing_state in ACTIVE_STATES for g in groups_page.items)
    if tab == "users":
        values["state"] = state or ""
        values["page"] = licensing.licensed_users(
            me.ctx, me.tenant_id, row.plan_id, state=state or None, cursor=cursor, limit=PAGE_SIZE
        )
    elif tab == "groups":
        values["page"] = (
            licensing.plan_groups(me.ctx, me.tenant_id, row.plan_id, cursor=cursor, limit=PAGE_SIZE)
            if cursor
            else groups_page
        )
    else:
        me.require("subscriptions.read")
        values["page"] = billing.list_subscriptions(
            me.ctx, me.tenant_id, plan_id=row.plan_id, cursor=cursor, limit=PAGE_SIZE
        )
    values["cursor"] = cursor
    return _render(request, me, "plan.html", status=status, **values)


def _notice(request: Request) -> str | None:
    q = request.query_params
    done = q.get("done")
    counts = {k: int(v) for k, v in q.items() if k in ("users", "groups") and v.isdigit() and len(v) < 8}
    u, g = counts.get("users", 0), counts.get("groups", 0)
    what = ", ".join(
        p for p in (f"{u} user{'s' * (u != 1)}" if u else "", f"{g} group{'s' * (g != 1)}" if g else "") if p
    )
    messages = {
        "assigned": f"Assigned to {what}." + (" Groups are being processed." if g else ""),
        "unassigned": f"Unassigned from {what}.",
        "reassigned": "License reassigned.",
        "reprocessed": "Reprocessing started.",
        "quantity": "Quantity changed.",
    }
    return messages.get(done or "")


@router.get("/licenses/{plan}")
async def plan_page(
    request: Request, plan: str, tab: str = "users", cursor: str | None = None, state: str | None = None
) -> Response:
    me = await admin(request)
    return _plan_page(request, me, plan[:63], tab=tab, cursor=cursor, state=state, notice=_notice(request))


@router.get("/licenses/{plan}/counts")
async def plan_counts(request: Request, plan: str) -> Response:
    """The counts on top of a plan's page (polled while a group is being processed)."""
    me = await admin(request)
    me.require("licenses.read")
    row = licensing.license_overview(me.ctx, me.tenant_id, plan[:63])
    groups_page = licensing.plan_groups(me.ctx, me.tenant_id, row.plan_id, limit=PAGE_SIZE)
    pending = any(g.processing_state in ACTIVE_STATES for g in groups_page.items)
    return _render(request, me, "_counts.html", row=row, pending=pending)


def _back(plan: str, tab: str, **params: int | str) -> RedirectResponse:
    query = urlencode({"tab": tab, **params})
    return RedirectResponse(f"/admin/licenses/{quote(plan)}?{query}", status_code=303)


def _htmx_aware(request: Request, response: RedirectResponse) -> Response:
    if request.headers.get("hx-request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": response.headers["location"]})
    return response


@router.post("/licenses/{plan}/unassign")
async def unassign_users(request: Request, plan: str) -> Response:
    me = await admin(request, write=True)
    me.require("licenses.write")
    form = await request.form()
    users = _form_list(form, "users")
    groups = _form_list(form, "groups")
    tab = "groups" if groups else "users"
    if not users and not groups:
        return _plan_page(request, me, plan, tab=tab, status=422, error="Select at least one user first.")
    try:
        licensing.unassign(me.ctx, me.tenant_id, plan, users=users, groups=groups)
    except DomainError as exc:
        return _plan_page(request, me, plan, tab=tab, status=exc.status, error=sentence(exc))
    return _htmx_aware(request, _back(plan, tab, done="unassigned", users=len(users), groups=len(groups)))


@router.get("/licenses/{plan}/groups/{group_id}/state")
async def group_state(request: Request, plan: str, group_id: str) -> Response:
    """A group assignment's processing state; the fragment polls itself until Complete."""
    me = await admin(request)
    me.require("licenses.read")
    rows = [g for g in licensing.group_licenses(me.ctx, me.tenant_id, group_id[:36]) if g.plan_id == plan]
    if not rows:
        raise NotFound("group assignment", group_id)
    name = "_group_row.html" if request.query_params.get("view") == "row" else "_group_state.html"
    return _render(request, me, name, g=rows[0], plan_id=plan)


@router.post("/licenses/{plan}/groups/{group_id}/reprocess")
async def reprocess_group(request: Request, plan: str, group_id: str) -> Response:
    me = await admin(request, write=True)
    me.require("licenses.write")
    licensing.reprocess_group(me.ctx, me.tenant_id, group_id[:36])
    return _htmx_aware(request, _back(plan, "groups", done="reprocessed"))


@router.get("/licenses/{plan}/reassign")
async def reassign_page(request: Request, plan: str, user: str = "", q: str = "") -> Response:
    me = await admin(request)
    me.require("licenses.write")
    row = licensing.license_overview(me.ctx, me.tenant_id, plan[:63])
    source = directory.get_user(me.ctx, me.tenant_id, user[:320])
    hits = _search(me, q, ("user",)) if q.strip() else []
    name = "_reassign_results.html" if request.headers.get("hx-request") == "true" else "reassign.html"
    return _render(request, me, name, row=row, source=source, q=q, hits=hits, section="licenses")


@router.post("/licenses/{plan}/reassign")
async def reassign(request: Request, plan: str) -> Response:
    me = await admin(request, write=True)
    me.require("licenses.write")
    form = await request.form()
    source, target = _form_str(form, "from", 320), _form_str(form, "to", 320)
    try:
        licensing.reassign(me.ctx, me.tenant_id, plan, source, target)
    except DomainError as exc:
        return _plan_page(request, me, plan, status=exc.status, error=sentence(exc))
    return _htmx_aware(request, _back(plan, "users", done="reassigned"))


@router.post("/licenses/{plan}/subscriptions/{subscription_id}")
async def change_quantity(request: Request, plan: str, subscription_id: str) -> Response:
    me = await admin(request, write=True)
    me.require("subscriptions.write")
    form = await request.form()
    raw = _form_str(form, "quantity", 10)
    if not raw.isdigit() or int(raw) < 1:
        return _plan_page(
            request,
            me,
            plan,
            tab="subscriptions",
            status=422,
            error="The quantity must be a whole number ≥ 1.",
        )
    try:
        billing.update_subscription(me.ctx, me.tenant_id, subscription_id[:36], quantity=int(raw))
    except DomainError as exc:
        return _plan_page(request, me, plan, tab="subscriptions", status=exc.status, error=sentence(exc))
    return _back(plan, "subscriptions", done="quantity")


# ---------------------------------------------------------------- the Assign licenses dialog


def _search(me: Admin, q: str, kinds: tuple[str, ...] = ("user", "group")) -> list[directory.SearchHit]:
    q = q.strip()[:200]
    if not q:
        return []
    return directory.search(me.ctx, me.tenant_id, q, types=kinds, limit=SEARCH_RESULTS).items


@dataclass
class Chip:
    type: str
    id: str
    name: str
    detail: str


def _chips(me: Admin, users: list[str], groups: list[str]) -> list[Chip]:
    chips = []
    for u in users:
        found = directory.get_user(me.ctx, me.tenant_id, u)
        chips.append(
            Chip("user", found.id, found.display_name or found.user_principal_name, found.user_principal_name)
        )
    for g in groups:
        group = directory.get_group(me.ctx, me.tenant_id, g)
        chips.append(Chip("group", group.id, group.display_name, "group"))
    return chips


@router.get("/licenses/{plan}/assign")
@router.post("/licenses/{plan}/assign")
async def assign_dialog(request: Request, plan: str, part: str = "") -> Response:
    """The dialog's state lives in the form (chosen users and groups as hidden fields), so it works the
    same with and without JavaScript; htmx re-renders only the part that changed."""
    posted = request.method == "POST"
    me = await admin(request, write=posted)
    me.require("licenses.write")
    row = licensing.license_overview(me.ctx, me.tenant_id, plan[:63])
    query: list[tuple[str, str | UploadFile]] = list(request.query_params.multi_items())
    form = await request.form() if posted else FormData(query)
    users = _form_list(form, "users", 500)
    groups = _form_list(form, "groups", 500)
    q = _form_str(form, "q", 200)
    allow_partial = form.get("allow_partial") == "on"
    for field, bucket in (("add", True), ("remove", False)):
        value = _form_str(form, field, 400)
        kind, _, ident = value.partition(":")
        target = users if kind == "user" else groups if kind == "group" else None
        if target is None or not ident:
            continue
        if bucket and ident not in target:
            target.append(ident)
        elif not bucket and ident in target:
            target.remove(ident)
    error = None
    if posted and form.get("do") == "assign":
        if not users and not groups:
            error = "Choose at least one user or group."
        else:
            try:
                licensing.assign(
                    me.ctx, me.tenant_id, row.plan_id, users=users, groups=groups, allow_partial=allow_partial
                )
            except DomainError as exc:
                error = sentence(exc)
            else:
                tab = "groups" if groups else "users"
                done = _back(row.plan_id, tab, done="assigned", users=len(users), groups=len(groups))
                return _htmx_aware(request, done)
    chips = _chips(me, users, groups)
    preview = (
        licensing.assign(me.ctx, me.tenant_id, row.plan_id, users=users, groups=groups, dry_run=True)
        if chips
        else None
    )
    chosen = {(c.type, c.id) for c in chips}
    hits = _search(me, q)
    values: dict[str, Any] = {
        "row": row,
        "q": q,
        "hits": hits,
        "chips": chips,
        "chosen": chosen,
        "preview": preview,
        "allow_partial": allow_partial,
        "error": error,
        "section": "licenses",
    }
    htmx = request.headers.get("hx-request") == "true"
    if htmx and part == "results":
        return _render(request, me, "_assign_results.html", **values)
    if htmx and part == "picked":
        return _render(request, me, "_assign_picked.html", **values)
    return _render(request, me, "assign.html", status=409 if error and posted else 200, **values)


# ---------------------------------------------------------------- users, groups, audit


@router.get("/users")
async def users_page(request: Request, q: str = "", cursor: str | None = None) -> Response:
    me = await admin(request)
    me.require("directory.read")
    page = directory.list_users(me.ctx, me.tenant_id, search=q[:200] or None, cursor=cursor, limit=PAGE_SIZE)
    name = "_users_rows.html" if request.headers.get("hx-request") == "true" else "users.html"
    return _render(request, me, name, page=page, q=q, cursor=cursor, section="users")


def _plan_names(me: Admin) -> dict[str, str]:
    products = {p.id: p.name for p in catalog.list_products(me.ctx)}
    return {p.id: f"{products.get(p.product_id, p.product_id)} {p.name}" for p in catalog.list_plans(me.ctx)}


@router.get("/users/{user}")
async def user_page(request: Request, user: str) -> Response:
    me = await admin(request)
    me.require("directory.read")
    found = directory.get_user(me.ctx, me.tenant_id, user[:320])
    held = licensing.user_licenses(me.ctx, me.tenant_id, found.id) if me.may("licenses.read") else []
    direct = directory.user_groups(me.ctx, me.tenant_id, found.id)
    every = directory.user_groups(me.ctx, me.tenant_id, found.id, transitive=True)
    direct_ids = {g.id for g in direct}
    return _render(
        request,
        me,
        "user.html",
        user=found,
        licenses=held,
        groups=direct,
        inherited=[g for g in every if g.id not in direct_ids],
        plan_names=_plan_names(me),
        section="users",
    )


@router.get("/groups")
async def groups_page(request: Request, q: str = "", cursor: str | None = None) -> Response:
    me = await admin(request)
    me.require("directory.read")
    page = directory.list_groups(me.ctx, me.tenant_id, search=q[:200] or None, cursor=cursor, limit=PAGE_SIZE)
    name = "_groups_rows.html" if request.headers.get("hx-request") == "true" else "groups.html"
    return _render(request, me, name, page=page, q=q, cursor=cursor, section="groups")


@router.get("/groups/{group_id}")
async def group_page(request: Request, group_id: str, cursor: str | None = None) -> Response:
    me = await admin(request)
    me.require("directory.read")
    group = directory.get_group(me.ctx, me.tenant_id, group_id[:36])
    members = directory.list_members(me.ctx, me.tenant_id, group.id, cursor=cursor, limit=PAGE_SIZE)
    held = licensing.group_licenses(me.ctx, me.tenant_id, group.id) if me.may("licenses.read") else []
    return _render(
        request,
        me,
        "group.html",
        group=group,
        members=members,
        licenses=held,
        cursor=cursor,
        section="groups",
        plan_names=_plan_names(me),
    )


AUDIT_FILTERS = ("action", "actorId", "targetId", "planId", "since", "until")


def _audit_filters(request: Request) -> tuple[dict[str, Any], dict[str, str]]:
    raw = {k: request.query_params.get(k, "").strip()[:200] for k in AUDIT_FILTERS}
    filters: dict[str, Any] = {
        "action": raw["action"] or None,
        "actor_id": raw["actorId"] or None,
        "target_id": raw["targetId"] or None,
        "plan_id": raw["planId"] or None,
    }
    for name, edge in (("since", time.min), ("until", time.max)):
        if raw[name]:
            try:
                filters[name] = datetime.combine(datetime.strptime(raw[name], "%Y-%m-%d").date(), edge)
            except ValueError:
                raise ValidationFailed(f"{name} must be a date (YYYY-MM-DD)", field=name) from None
    return filters, raw


@router.get("/audit")
async def audit_page(request: Request, cursor: str | None = None) -> Response:
    me = await admin(request)
    me.require("audit.read")
    filters, raw = _audit_filters(request)
    page = audit.query(me.ctx, me.tenant_id, cursor=cursor, limit=PAGE_SIZE, **filters)
    query = urlencode({k: v for k, v in raw.items() if v})
    return _render(
        request,
        me,
        "audit.html",
        page=page,
        raw=raw,
        query=query,
        cursor=cursor,
        section="audit",
        plan_names=_plan_names(me),
    )


@router.get("/audit.csv")
async def audit_csv(request: Request) -> Response:
    me = await admin(request)
    me.require("audit.read")
    filters, _raw = _audit_filters(request)
    first = audit.query(me.ctx, me.tenant_id, limit=1, **filters)  # refuse bad filters before streaming
    del first
    return StreamingResponse(
        audit.export_csv(me.ctx, me.tenant_id, **filters),
        media_type="text/csv; charset=utf-8",
        headers={**HEADERS, "Content-Disposition": 'attachment; filename="audit.csv"'},
    )
