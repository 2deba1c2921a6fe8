"""The Admin tab (admins): users (add, disable, enable, reset password, change role, unlock), their sessions
(list, end), and the audit log (read, filter, download as CSV). The logic is ``ui.users``' (the same as the
``sortloop users`` commands); each handler finds the user from the request's session and checks the role
again on the server."""

# No ``from __future__ import annotations``: Gradio reads the handlers' annotations at run time.
import html
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from station.store.models import ROLES
from ui.audit import audit_csv
from ui.auth import AuthError, ConsoleUser, Perm, request_user
from ui.downloads import download_dir
from ui.settings import Console
from ui.users import UserAdmin, UserChangeError

if TYPE_CHECKING:
    import pandas as pd

USER_COLUMNS = ["user", "role", "state", "must change password", "sessions", "created"]
SESSION_COLUMNS = ["session id", "user", "role", "started", "last seen", "address"]
AUDIT_COLUMNS = ["time", "action", "actor", "target", "detail", "address"]
AUDIT_ROWS = 200
ACTIONS = ("disable", "enable", "reset password", "set role", "unlock", "end sessions")


def when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


class AdminDesk:
    """What the tab does, apart from Gradio: every call names the acting user, checked for ``Perm.USERS``."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def _admin(self, user: ConsoleUser, address: str) -> UserAdmin:
        return self.console.auth.admin(user, address)

    def users(self, user: ConsoleUser) -> list[list[object]]:
        return [[r.username, r.role, r.state, "yes" if r.must_change else "", r.sessions, when(r.created_at)]
                for r in self._admin(user, "").rows()]

    def sessions(self, user: ConsoleUser, username: str | None = "") -> list[list[object]]:
        return [[s.id, s.username, s.role, when(s.created_at), when(s.last_seen), s.address or "-"]
                for s in self._admin(user, "").sessions((username or "").strip() or None)]

    def audit(self, user: ConsoleUser, action: str | None = "") -> list[list[object]]:
        self.console.auth.require(user, Perm.USERS)
        rows = self.console.repo.access.audit_log(AUDIT_ROWS, (action or "").strip() or None)
        return [[when(a.at), a.action, a.actor, a.target, a.detail, a.address] for a in rows]

    def add(self, user: ConsoleUser, username: str | None, role: str, address: str = "") -> str:
        name = (username or "").strip()
        password = self._admin(user, address).add(name, role)
        return (f"User **{html.escape(name)}** ({role}) added. Temporary password, shown once: "
                f"`{password}`. They choose their own at the first login.")

    def act(self, user: ConsoleUser, action: str, username: str | None, role: str, address: str = "") -> str:
        """One of ``ACTIONS`` on ``username``; returns what happened (in Markdown)."""
        admin, name = self._admin(user, address), (username or "").strip()
        if action == "disable":
            admin.disable(name)
            done = "disabled; their sessions are ended"
        elif action == "enable":
            admin.enable(name)
            done = "enabled"
        elif action == "reset password":
            done = (f"password reset; temporary password, shown once: `{admin.reset_password(name)}`; they must "
                    "choose a new one at the next login")
        elif action == "set role":
            admin.set_role(name, role)
            done = f"now {role}; their sessions are ended"
        elif action == "unlock":
            admin.unlock(name)
            done = "unlocked"
        elif action == "end sessions":
            done = f"{admin.end_sessions(name)} sessions ended"
        else:
            raise UserChangeError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
        return f"**{html.escape(name)}**: {done}."

    def end_session(self, user: ConsoleUser, session_id: str | None, address: str = "") -> str:
        sid = (session_id or "").strip()
        username = self._admin(user, address).end_session(sid)
        return f"Session {html.escape(sid)} of **{html.escape(username)}** ended."

    def audit_download(self, user: ConsoleUser) -> str:
        """The audit log as a CSV file for Gradio, offered to this admin only and removed once downloaded."""
        self.console.auth.require(user, Perm.USERS)
        path = download_dir("sortloop-audit-") / f"audit-log-{time.strftime('%Y%m%d-%H%M%S')}.csv"
        path.write_text(audit_csv(self.console.repo.access.audit_log(10_000)))
        return self.console.ctx.downloads.offer(path, user.username, once=True)


def _frame(rows: list[list[object]], columns: list[str]) -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)


def build_admin_tab(console: Console, user_state: Any) -> None:
    """The Admin tab's components and events."""
    import gradio as gr

    desk = AdminDesk(console)

    def who(request: gr.Request) -> tuple[ConsoleUser, str]:
        user = request_user(console.auth, request, Perm.USERS)
        client = getattr(request, "client", None)
        return user, getattr(client, "host", "") or ""

    def tables(user: ConsoleUser, action_filter: str) -> tuple[Any, Any, Any]:
        return (_frame(desk.users(user), USER_COLUMNS), _frame(desk.sessions(user), SESSION_COLUMNS),
                _frame(desk.audit(user, action_filter), AUDIT_COLUMNS))

    def guarded(work: Callable[[ConsoleUser, str], str], action_filter: str, request: gr.Request) -> tuple[Any, ...]:
        try:
            user, address = who(request)
        except AuthError as exc:
            raise gr.Error(str(exc)) from None
        try:
            message = work(user, address)
        except (UserChangeError, AuthError) as exc:
            message = f"**Not done:** {html.escape(str(exc), quote=False)}"
        return (message, *tables(user, action_filter))

    gr.Markdown("#### Users")
    users = gr.Dataframe(interactive=False, headers=USER_COLUMNS, elem_id="admin-users")
    with gr.Row():
        name = gr.Textbox(label="User name", elem_id="admin-name")
        role = gr.Dropdown(list(ROLES), value="operator", label="Role", elem_id="admin-role")
        action = gr.Dropdown(list(ACTIONS), value="disable", label="Change", elem_id="admin-action")
    with gr.Row():
        add_btn = gr.Button("Add user", variant="primary", elem_id="admin-add")
        apply_btn = gr.Button("Apply change", elem_id="admin-apply")
        refresh_btn = gr.Button("Refresh", elem_id="admin-refresh")
    result = gr.Markdown(elem_id="admin-result")
    gr.Markdown("#### Sessions")
    sessions = gr.Dataframe(interactive=False, headers=SESSION_COLUMNS, elem_id="admin-sessions")
    with gr.Row():
        session_id = gr.Textbox(label="Session id", elem_id="admin-session-id")
        end_btn = gr.Button("End session", elem_id="admin-end-session")
    gr.Markdown("#### Audit log (newest first)")
    with gr.Row():
        action_filter = gr.Textbox(label="Only this action (e.g. login.failed)", elem_id="admin-audit-filter")
        csv_btn = gr.Button("Download audit log (CSV)", elem_id="admin-audit-csv")
    audit = gr.Dataframe(interactive=False, headers=AUDIT_COLUMNS, elem_id="admin-audit")
    csv_file = gr.File(label="Download", interactive=False, height=90, elem_id="admin-audit-file")
    outs = [result, users, sessions, audit]

    def on_add(username: str, role: str, audit_filter: str, request: gr.Request) -> tuple[Any, ...]:
        return guarded(lambda u, a: desk.add(u, username, role, a), audit_filter, request)

    def on_apply(action: str, username: str, role: str, audit_filter: str, request: gr.Request) -> tuple[Any, ...]:
        return guarded(lambda u, a: desk.act(u, action, username, role, a), audit_filter, request)

    def on_end(session_id: str, audit_filter: str, request: gr.Request) -> tuple[Any, ...]:
        return guarded(lambda u, a: desk.end_session(u, session_id, a), audit_filter, request)

    def on_refresh(audit_filter: str, request: gr.Request) -> tuple[Any, ...]:
        return guarded(lambda u, a: "", audit_filter, request)

    def on_csv(request: gr.Request) -> str:
        try:
            return desk.audit_download(who(request)[0])
        except AuthError as exc:
            raise gr.Error(str(exc)) from None

    add_btn.click(on_add, [name, role, action_filter], outs, api_name="admin_add")
    apply_btn.click(on_apply, [action, name, role, action_filter], outs, api_name="admin_change")
    end_btn.click(on_end, [session_id, action_filter], outs, api_name="admin_end_session")
    refresh_btn.click(on_refresh, [action_filter], outs, api_name="admin_refresh")
    action_filter.submit(on_refresh, [action_filter], outs, api_visibility="private")
    csv_btn.click(on_csv, None, csv_file, api_name="admin_audit_csv")
    user_state.change(_admins_only(console, on_refresh, len(outs)), [action_filter], outs, api_visibility="private")


def _admins_only(console: Console, refresh: Callable[..., tuple[Any, ...]], n: int) -> Callable[..., tuple[Any, ...]]:
    """The tab's fill when a page loads: for an admin; anyone else (the tab hidden) gets no error toast."""
    import gradio as gr

    def on_login(audit_filter: str, request: gr.Request) -> tuple[Any, ...]:
        try:
            request_user(console.auth, request, Perm.USERS)
        except AuthError:
            return (gr.skip(),) * n
        return refresh(audit_filter, request)

    return on_login
