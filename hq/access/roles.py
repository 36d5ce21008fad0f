"""The roles of HQ staff and what each may do (docs/console.md has the table).

A permission is a dotted name a route declares with ``requires``; a role is a set of
them. Store managers and area managers are limited to their own stores: their
``Principal.stores`` is that set, everyone else's is ``None`` (the whole chain).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import Forbidden, ValidationError

# each permission, in words, for the users page and the 403 message
PERMISSIONS: dict[str, str] = {
    "stores.read": "查看门店",
    "members.read": "查看会员",
    "members.reveal": "查看完整手机号 (记审计)",
    "members.pii": "查看姓名、生日等个人资料",
    "members.edit": "修改会员资料",
    "members.adjust": "调整余额和积分",
    "members.merge": "合并会员",
    "cards.block": "挂失/解挂会员卡",
    "sales.read": "查看销售",
    "exceptions.read": "查看异常和死信",
    "exceptions.resolve": "处理异常和死信",
    "reports.read": "查看报表",
    "reports.export": "导出报表 (记审计)",
    "rules.read": "查看会员规则",
    "rules.publish": "发布会员规则",
    "coupons.issue": "发券",
    "audit.read": "查看审计日志",
    "users.manage": "管理账号和令牌",
    "enrol.create": "生成门店开通码",
    "followups.read": "查看回访任务",
    "followups.manage": "记录回访结果",
    "marketing.read": "查看营销名单和分群 (导出记审计)",
    "marketing.manage": "保存分群、生成名单、修改营销阈值",
    "campaigns.manage": "创建、发送和停止营销活动",
}

_READ = {"stores.read", "members.read", "sales.read", "exceptions.read", "reports.read"}
_STORE_MANAGER = _READ | {
    "members.reveal",
    "members.pii",
    "members.edit",
    "cards.block",
    "exceptions.resolve",
    "reports.export",
    "rules.read",
    "followups.read",
    "followups.manage",
    "marketing.read",
}


@dataclass(frozen=True)
class Role:
    name: str
    label: str  # Chinese, as the console shows it
    permissions: frozenset[str]
    scoped: str | None = None  # "store" | "area": the account names which one


ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role("admin", "管理员", frozenset(PERMISSIONS)),
        Role(
            "membership",
            "会员/营销",
            frozenset(PERMISSIONS) - {"users.manage", "enrol.create"},
        ),
        Role("analyst", "分析师 (只读)", frozenset(_READ | {"reports.export", "rules.read"})),
        Role("area", "区域经理", frozenset(_STORE_MANAGER), scoped="area"),
        Role("store", "店长", frozenset(_STORE_MANAGER), scoped="store"),
    )
}


def role_named(name: str) -> Role:
    role = ROLES.get(name)
    if role is None:
        raise ValidationError(f"unknown role {name!r}; one of: {', '.join(ROLES)}", field="role")
    return role


def check_scope(role: Role, scope: str | None) -> str | None:
    """The scope an account of ``role`` is given: required for store and area managers,
    refused for the chain-wide roles (a scope there would silently mean nothing)."""
    scope = (scope or "").strip() or None
    if role.scoped and scope is None:
        raise ValidationError(
            f"role {role.name} needs --scope (its {role.scoped} code)", field="scope"
        )
    if not role.scoped and scope is not None:
        raise ValidationError(f"role {role.name} is chain-wide; it takes no scope", field="scope")
    if scope is not None and len(scope) > 32:
        raise ValidationError("scope is longer than 32 characters", field="scope")
    return scope


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a signed-in user or an integration token."""

    name: str  # the account's username, or "token:<id>"
    role: Role
    scope: str | None = None
    stores: frozenset[str] | None = None  # None: every store
    kind: str = "session"  # session | token
    display_name: str = ""
    csrf: str = ""

    @property
    def actor(self) -> str:
        """How the audit log names it (hq.audit.record): the username, or token:<id>."""
        return self.name

    def can(self, permission: str) -> bool:
        return permission in self.role.permissions

    def require(self, permission: str) -> None:
        if not self.can(permission):
            raise Forbidden(
                f"无权限: {PERMISSIONS.get(permission, permission)}"
                f" ({self.role.label} may not {permission})"
            )

    def sees_store(self, store: str | None) -> bool:
        return self.stores is None or (store is not None and store in self.stores)

    def require_store(self, store: str | None) -> None:
        if not self.sees_store(store):
            raise Forbidden(f"无权查看其他门店: {store} (not one of your stores)")
