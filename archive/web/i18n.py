"""Translations: zh-CN first, English second, by key.

Each page module adds its own messages with :func:`add` at import, so no module edits
another's catalogue. :func:`translate` falls back to English, then to the key itself (a
missing translation shows up on the page instead of breaking it).
"""

from __future__ import annotations

LANGS = ("zh-CN", "en")
DEFAULT_LANG = "zh-CN"
LANG_COOKIE = "lang"

CATALOG: dict[str, dict[str, str]] = {}


def add(messages: dict[str, tuple[str, str]]) -> None:
    """Add ``{key: (zh-CN, English)}``; a key already there with other text is an error."""
    for key, (zh, en) in messages.items():
        old = CATALOG.get(key)
        if old is not None and old != {"zh-CN": zh, "en": en}:
            raise ValueError(f"translation key {key!r} defined twice, differently")
        CATALOG[key] = {"zh-CN": zh, "en": en}


def pick_lang(value: str | None) -> str:
    """The language a ``lang`` cookie or parameter names, else the default (zh-CN)."""
    if value in LANGS:
        return value  # type: ignore[return-value]
    if value and value.lower().startswith("en"):
        return "en"
    return DEFAULT_LANG


def translate(key: str, lang: str, **fmt: object) -> str:
    """The text of ``key`` in ``lang``; text that is no key (an archive's one-line
    message) is returned as it is."""
    entry = CATALOG.get(key)
    if entry is None:
        return key
    text = entry.get(lang) or entry.get("en") or key
    return text.format(**fmt) if fmt else text


add(
    {
        "app.title": ("执法记录仪证据档案", "Body-camera evidence archive"),
        "lang.other": ("English", "中文"),
        "nav.home": ("首页", "Home"),
        "nav.day": ("执法日", "Officer's day"),
        "nav.audit": ("审计日志", "Audit log"),
        "nav.logout": ("退出", "Log out"),
        "nav.signed_in": ("{name}（{role}）", "{name} ({role})"),
        "role.officer": ("执法人员", "officer"),
        "role.archivist": ("档案管理员", "archivist"),
        "role.supervisor": ("监督人员", "supervisor"),
        "role.head": ("单位负责人", "head of unit"),
        "role.auditor": ("审计人员", "auditor"),
        "role.administrator": ("系统管理员", "administrator"),
        "login.title": ("登录", "Log in"),
        "login.name": ("用户名", "User name"),
        "login.password": ("密码", "Password"),
        "login.totp": ("动态验证码（如已设置）", "Second-factor code (if set)"),
        "login.submit": ("登录", "Log in"),
        "login.failed": (
            "登录失败：用户名、密码或验证码错误。",
            "Login failed: wrong name, password or code.",
        ),
        "login.limited": (
            "登录失败次数过多，请 {minutes} 分钟后再试。",
            "Too many failed logins: try again in {minutes} minutes.",
        ),
        "logout.done": ("您已退出。", "You are logged out."),
        "home.title": ("欢迎", "Welcome"),
        "home.intro": (
            "请从上方菜单选择要查看的内容。",
            "Choose what to look at from the menu above.",
        ),
        "error.title": ("出错了", "Something went wrong"),
        "error.back": ("返回首页", "Back to the start page"),
        "error.login": ("重新登录", "Log in again"),
        "error.400": ("请求有误", "Bad request"),
        "error.400.range": (
            "请求中的数字或日期超出范围，或含有无法保存的字符；未做任何更改。",
            "A number or date in the request is out of range, or it holds characters that "
            "cannot be stored; nothing was changed.",
        ),
        "error.403": ("无权访问", "Refused"),
        "error.403.csrf": (
            "表单已失效或不是本站发出的（CSRF 校验失败），未做任何更改。",
            "The form is stale or did not come from this console (CSRF check failed); "
            "nothing was changed.",
        ),
        "error.404": ("页面不存在", "Not found"),
        "error.404.detail": (
            "没有这个页面或记录：{path}",
            "There is no such page or record: {path}",
        ),
        "error.409": ("文件已损坏", "Damaged file"),
        "error.405": ("不支持此操作", "Method not allowed"),
        "error.429": ("请求过多", "Too many requests"),
        "error.500": ("服务器内部错误", "Internal error"),
        "error.500.detail": (
            "服务器处理请求时出错，已记录日志。未做任何更改。",
            "The server failed on this request and logged it. Nothing was changed.",
        ),
        "error.expired": ("会话已过期", "Session expired"),
        "error.expired.detail": (
            "您已较长时间未操作，会话已过期，请重新登录。",
            "Your session expired after a time without use: please log in again.",
        ),
        "tz.label": ("时区", "time zone"),
    }
)
