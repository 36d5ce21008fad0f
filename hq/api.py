"""HQ's JSON API and console: ``create_app(config)`` with one blueprint per resource.

Every route needs sign-in (hq/access/guard.py): a console session or a bearer token,
and the permission the route declares. Bad input always gets a 4xx with a message,
never a 500: JSON under ``/api``, a page in the console.
"""

from __future__ import annotations

from typing import Any

import peewee as pw
from flask import Blueprint, Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from core.errors import HuiyuanError, ValidationError
from hq import audit, console, services
from hq import metrics as hq_metrics
from hq.access import guard
from hq.access.guard import current, requires
from hq.access.masking import member_for
from hq.config import HqConfig
from hq.enrol import enrol_bp
from hq.models import bind, open_database, utcnow

stores_bp = Blueprint("stores", __name__, url_prefix="/api/stores")
members_bp = Blueprint("members", __name__, url_prefix="/api/members")
dead_letters_bp = Blueprint("dead_letters", __name__, url_prefix="/api/dead-letters")
exceptions_bp = Blueprint("exceptions", __name__, url_prefix="/api/exceptions")
merges_bp = Blueprint("merges", __name__, url_prefix="/api/merges")
cards_bp = Blueprint("cards", __name__, url_prefix="/api/cards")
offline_policies_bp = Blueprint("offline_policies", __name__, url_prefix="/api/offline-policies")


@offline_policies_bp.get("")
@requires("rules.read")
def offline_policies() -> Any:
    """The published policies; with ``?store=S`` also the one in force there per kind."""
    from hq.offline import list_policies, policies_in_force

    store = request.args.get("store")
    out: dict[str, Any] = {"policies": list_policies(store)}
    if store is not None:
        out["in_force"] = policies_in_force(store)
    return jsonify(out)


@offline_policies_bp.put("/<kind>")
@requires("rules.publish")
def set_offline_policy(kind: str) -> Any:
    """Body ``{mode, daily_limit?, store?, staff?}``: the chain's policy, or one store's."""
    from hq.offline import set_policy

    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object {mode, daily_limit, store, staff}")
    raw = {k: body[k] for k in ("mode", "daily_limit") if k in body} | {"kind": kind}
    state, changes = set_policy(_db(), raw, body.get("store"), body.get("staff"))
    return jsonify({"policy": state, "changes": len(changes), "pushed": _push(changes)})


@offline_policies_bp.delete("/<kind>")
@requires("rules.publish")
def remove_offline_policy(kind: str) -> Any:
    """``?store=S[&staff=who]``: remove that store's override of ``kind``."""
    from hq.offline import remove_store_policy

    args = request.args
    state, changes = remove_store_policy(_db(), kind, args.get("store"), args.get("staff"))
    return jsonify({"removed": state, "changes": len(changes), "pushed": _push(changes)})


def _push(changes: list[Any]) -> bool:
    """Best effort, as the CLI does; stores also page the change log."""
    from hq.cli import push_changes

    return push_changes(current_app.config["HQ"], changes)


@cards_bp.post("/<card_no>/block")
@requires("cards.block")
def block_card(card_no: str) -> Any:
    card_no = _id_text(card_no, "card_no")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        body = {}
    blocked = body.get("blocked", True)
    reason = body.get("reason", "挂失")
    if not isinstance(blocked, bool) or not isinstance(reason, str):
        raise ValidationError("blocked must be true/false and reason a string", field="blocked")
    changes = services.block_card(_db(), card_no, blocked, reason, utcnow(), by=current().actor)
    return jsonify({"card_no": card_no, "blocked": blocked, "changes": len(changes)})


def _db() -> pw.Database:
    return current_app.extensions["hq_db"]


def _limit(default: int = 100, most: int = 1000) -> int:
    raw = request.args.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise ValidationError(f"limit must be 1..{most}", field="limit")
    return int(raw)


MAX_ID_LEN = 64  # member ids, card numbers and phones are far shorter


def _id_text(value: str, field: str) -> str:
    """An id, card number or phone from a URL: a 400 naming ``field`` if it is longer than
    any is or holds a NUL (which PostgreSQL refuses in text), never a 500."""
    if len(value) > MAX_ID_LEN or "\x00" in value:
        raise ValidationError(
            f"{field} 无效: 最多 {MAX_ID_LEN} 个字符, 不能含空字符"
            f" (at most {MAX_ID_LEN} characters, no NUL)",
            field=field,
        )
    return value


@stores_bp.get("")
@requires("stores.read")
def stores() -> Any:
    return jsonify({"stores": services.list_stores(current().stores)})


@members_bp.get("")
@requires("members.read")
def member_search() -> Any:
    q = _id_text(request.args.get("q", ""), "q")
    if not q.strip():
        raise ValidationError("q (member id, card number or phone) is required", field="q")
    return jsonify(_member_view(services.find_member(q)))


@members_bp.get("/<member_id>")
@requires("members.read")
def member(member_id: str) -> Any:
    member_id = _id_text(member_id, "member_id")
    return jsonify(_member_view(services.find_member(member_id)))


def _member_view(member: Any) -> dict[str, Any]:
    """A member's detail as the signed-in role may see it: another store's member is
    refused to a store or area manager, personal data masked (hq/access/masking.py)."""
    principal = current()
    if principal.stores is not None:
        principal.require_store(member.registered_store)
    detail = services.member_detail(member, _limit(200, 5000))
    detail["member"] = member_for(principal, detail["member"])
    return detail


@members_bp.post("/<member_id>/reveal-phone")
@requires("members.reveal")
def reveal_phone(member_id: str) -> Any:
    """The member's phone number in full, written to the audit log (member.reveal_phone)."""
    member = services.find_member(_id_text(member_id, "member_id"))
    principal = current()
    if principal.stores is not None:
        principal.require_store(member.registered_store)
    audit.record(_db(), principal.actor, "member.reveal_phone", member.id)
    return jsonify({"member_id": member.id, "value": member.phone or ""})


@dead_letters_bp.get("")
@requires("exceptions.read")
def dead_letters() -> Any:
    return jsonify(
        {
            "dead_letters": services.list_dead_letters(
                request.args.get("store"), _limit(), current().stores
            )
        }
    )


@exceptions_bp.get("")
@requires("exceptions.read")
def exceptions() -> Any:
    return jsonify(
        {
            "exceptions": services.list_exceptions(
                request.args.get("kind"),
                request.args.get("status"),
                _limit(200),
                current().stores,
            )
        }
    )


@merges_bp.get("")
@requires("members.read")
def merges() -> Any:
    return jsonify({"merges": services.list_merges(_limit(200), current().stores)})


@merges_bp.post("")
@requires("members.merge")
def merge() -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object {from, to}")
    for key in ("from", "to"):
        if not isinstance(body.get(key), str):
            raise ValidationError(f"{key} is required", field=key)
    # who merges is the signed-in account, never a name in the body
    done, changes = services.staff_merge(_db(), body["from"], body["to"], current().actor, utcnow())
    return jsonify(
        {
            "merge": {
                "id": done.id,
                "from_member_id": done.from_member,
                "to_member_id": done.to_member,
            },
            "changes": len(changes),
        }
    ), 201


def _wants_page() -> bool:
    """A console page (not /api, not a bearer client) answers errors as a page."""
    return (
        not request.path.startswith("/api")
        and "Authorization" not in request.headers
        and g.get("hy_principal") is not None
    )


def _error(exc: HuiyuanError) -> Any:
    status = exc.http_status if 400 <= exc.http_status < 500 else 400
    if _wants_page():
        title = "无权限" if status == 403 else "出错了"
        return console.render("error.html", status, title=title, message=exc.message)
    return jsonify(exc.to_dict()), status


def _http_error(exc: HTTPException) -> Any:
    if _wants_page() and exc.code and exc.code >= 400:
        words = {
            404: ("页面不存在", "您要打开的页面不存在, 请从左侧菜单进入。"),
            405: ("不支持的操作", "此页面不支持这个操作。"),
        }
        title, message = words.get(exc.code, ("出错了", exc.description))
        return console.render("error.html", exc.code, title=title, message=message)
    return jsonify(
        {"error": exc.name.lower().replace(" ", "_"), "message": exc.description}
    ), exc.code


def create_app(config: HqConfig | None = None, db: pw.Database | None = None) -> Flask:
    config = config or HqConfig.from_env()
    app = Flask("hq", static_folder=None)  # the console serves its own (hq/console/static)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    database = db if db is not None else open_database(config.database_url)
    bind(database, create=False)
    app.extensions["hq_db"] = database
    app.config["HQ"] = config
    for bp in (stores_bp, members_bp, dead_letters_bp, exceptions_bp, merges_bp, cards_bp):
        app.register_blueprint(bp)
    app.register_blueprint(offline_policies_bp)
    hq_metrics.init_app(app, database, config.metrics_token_file)
    app.register_blueprint(enrol_bp)  # authenticated by its one-time code (hq/enrol.py)
    console.register(app)
    # -- memberpage: the member's own page, public by necessity (hq/portal/pages.py)
    from hq.portal import pages as portal_pages

    portal_pages.init_app(app)
    # -- end memberpage
    app.register_error_handler(HuiyuanError, _error)
    app.register_error_handler(HTTPException, _http_error)

    @app.before_request
    def _open() -> None:
        g.hq_db_opened = database.is_closed()
        if g.hq_db_opened:
            database.connect()

    guard.init_app(app)  # after _open: the guard reads sessions from the database

    @app.teardown_request
    def _close(exc: BaseException | None) -> None:
        if g.get("hq_db_opened") and not database.is_closed():
            database.close()

    return app
